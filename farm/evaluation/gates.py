"""Promotion gates: thresholds on evaluation metrics, and the one function that checks them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import TypeAdapter

from farm.specs import Gate

Verdict = Literal["pass", "fail", "ungated"]


Gates = dict[str, Gate]
_GATES = TypeAdapter(Gates)


def parse_gates(text: str | None) -> Gates:
    """Gates from their JSON form (a model version's `farm.gates` tag)."""
    return _GATES.validate_python(json.loads(text or "{}"))


def dump_gates(gates: Mapping[str, Gate]) -> str:
    """The JSON form of gates (what a model version's `farm.gates` tag holds)."""
    return json.dumps({k: g.model_dump(exclude_none=True) for k, g in gates.items()})


def gate_failures(
    gates: Mapping[str, Gate], metrics: Mapping[str, float], hint: str = "farm evaluate --model"
) -> list[str]:
    """One line per failed gate: a metric over its max, under its min, or not evaluated."""
    failures = []
    for name, gate in gates.items():
        value = metrics.get(name)
        if value is None:
            failures.append(f"{name}: not evaluated (run `{hint}`)")
            continue
        if gate.max is not None and value > gate.max:
            failures.append(f"{name} = {value:.4g} > max {gate.max:g}")
        if gate.min is not None and value < gate.min:
            failures.append(f"{name} = {value:.4g} < min {gate.min:g}")
    return failures


def verdict(gates: Mapping[str, Gate], metrics: Mapping[str, float]) -> Verdict:
    """'pass' or 'fail' against the gates; 'ungated' when there are none."""
    if not gates:
        return "ungated"
    return "fail" if gate_failures(gates, metrics) else "pass"


def judge(result, gates: Mapping[str, Gate], hint: str = "farm evaluate --model") -> Verdict:
    """Check an EvaluationResult against gates, record the verdict on it and return it."""
    values = result.values()
    outcome = verdict(gates, values)
    result.set_verdict(outcome, gate_failures(gates, values, hint))
    return outcome
