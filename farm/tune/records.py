"""Typed search records and where they live: FARM_HOME/tune/<id>/{search.json, trials.json, ...}."""

from __future__ import annotations

import csv
import io
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from farm import store
from farm.errors import FarmError
from farm.specs import FIDELITY_METRICS, Scalar, TuneJob

SCHEMA_VERSION = 1
SHOWN_METRICS = ("val_loss", *FIDELITY_METRICS)
"""Metrics the trial table carries besides the search's own (when the trials report them)."""
SearchStatus = Literal["running", "interrupted", "failed", "finished"]
TrialStatus = Literal["running", "unfinished", "completed", "stopped early", "error"]


class SearchRecord(BaseModel):
    """search.json: the resolved tune job, its MLflow runs, status and outcome."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    name: str
    job: TuneJob
    experiment_id: str
    parent_run_id: str
    status: SearchStatus = "running"
    created: float
    seconds: float = 0.0
    error: str | None = None
    best_trial: str | None = None
    version: str | None = None


class TrialRow(BaseModel):
    """One row of the trial table: parameters, metrics, status, epochs and checkpoint."""

    model_config = ConfigDict(extra="forbid")
    trial_id: str
    params: dict[str, Scalar]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    status: TrialStatus
    epochs: int = 0
    planned_epochs: int = 0
    stopped_early: bool = False
    checkpoint_path: str | None = None
    placement_group: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """Whether the trial ended (completed, stopped early or errored)."""
        return self.status not in ("unfinished", "running")


_ROWS = TypeAdapter(list[TrialRow])


def new_search_id(job: TuneJob) -> str:
    """<search name>-<UTC time>-<4 hex digits>."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{job.search_name}-{stamp}-{secrets.token_hex(2)}"


def search_url(search_id: str, *parts: str) -> str:
    """FARM_HOME/tune/<search id>/..."""
    return store.join(store.home(), "tune", search_id, *parts)


def read_search(search_id: str) -> SearchRecord:
    """search.json of a search; FarmError naming the known searches if it does not exist."""
    url = search_url(search_id, "search.json")
    if not store.exists(url):
        known = ", ".join(sorted(store.listdir(store.join(store.home(), "tune")))) or "none yet"
        raise FarmError(f"no tune search {search_id!r} in {store.home()} (known: {known})")
    return SearchRecord.model_validate_json(store.read_text(url))


def write_search(doc: SearchRecord) -> None:
    """Write search.json."""
    store.write_text(search_url(doc.id, "search.json"), doc.model_dump_json(indent=2))


def read_trials(search_id: str, home: str | None = None) -> list[TrialRow]:
    """The trial rows written by the search (empty before the first trial reports)."""
    url = store.join(home or store.home(), "tune", search_id, "trials.json")
    return _ROWS.validate_json(store.read_text(url)) if store.exists(url) else []


def write_trials(search_id: str, rows: list[TrialRow], home: str | None = None) -> None:
    """Write trials.json."""
    url = store.join(home or store.home(), "tune", search_id, "trials.json")
    store.write_text(url, _ROWS.dump_json(rows, indent=2).decode())


def other_metrics(rows: list[TrialRow], metric: str) -> list[str]:
    """The table's metric columns besides the search's own: those some trial reported."""
    return [
        k for k in SHOWN_METRICS if k != metric and any(r.metrics.get(k) is not None for r in rows)
    ]


def trials_csv(rows: list[TrialRow], metric: str) -> str:
    """The trial table as CSV: one column per searched parameter, then the metrics."""
    params = sorted({k for r in rows for k in r.params})
    extra = other_metrics(rows, metric)
    cols = ["trial_id", *params, metric, *extra, "status", "epochs", "stopped_early"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in rows:
        writer.writerow([_cell(r, c, params) for c in cols])
    return buf.getvalue()


def _cell(row: TrialRow, column: str, params: list[str]) -> Any:
    if column in params:
        return row.params.get(column)
    if column in row.metrics:
        return row.metrics[column]
    return getattr(row, column, None)
