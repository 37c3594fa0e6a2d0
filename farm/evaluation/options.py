"""How an evaluation runs: one options object for in-memory, streamed, shower and jet evaluations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvaluationOptions:
    """Settings of one evaluation (every random choice comes from `seed`).

    Attributes:
        seed: Seed of the reference halves, subsets, bootstraps and classifiers.
        classifier: Train the low- and high-level classifiers (the slowest metrics).
        max_events: Use at most this many events of each sample (a seeded subset).
        threshold_mev: Voxels at or below count as empty (default: the challenge's per geometry).
        plots: Write PNG plots beside metrics.json and report.html.
        stream: Read shower files chunk by chunk (None: when they would not fit a quarter of RAM).
        subsample: Streaming: events per part for FPD, KPD, classifiers and plots.
        chunk_rows: Streaming: showers per chunk read.
        classifier_kwargs: Extra arguments of metrics.classifier_test.
        metric_kwargs: Extra arguments per metric function name, e.g. {"fpd": {"num_batches": 5}}.
        labels: What the report names: model version, campaign, reference, generated.
    """

    seed: int = 0
    classifier: bool = True
    max_events: int | None = None
    threshold_mev: float | None = None
    plots: bool = True
    stream: bool | None = None
    subsample: int | None = None
    chunk_rows: int | None = None
    classifier_kwargs: dict[str, Any] = field(default_factory=dict)
    metric_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
