"""Rich progress displays shared by the CLI commands."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
out = Console()


def bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextlib.contextmanager
def training_progress(description: str) -> Iterator:
    """Yields on_start(run_id, epochs); a thread follows the run's epochs in MLflow."""
    stop = threading.Event()
    progress = bar()
    progress.start()
    state: dict = {}

    def follow() -> None:
        from farm import registry

        client = registry.client()
        while not stop.wait(1.0):
            if "run_id" not in state:
                continue
            history = client.get_metric_history(state["run_id"], "val_loss")
            if history:
                last = max(history, key=lambda m: m.step)
                progress.update(
                    state["task"], completed=last.step, info=f"val_loss {last.value:.4f}"
                )

    def on_start(run_id: str, epochs: int) -> None:
        state["task"] = progress.add_task(description, total=epochs, info="starting Ray Train")
        state["run_id"] = run_id

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield on_start
        if "task" in state:
            progress.update(state["task"], completed=progress.tasks[0].total)
    finally:
        stop.set()
        thread.join(timeout=5)
        progress.stop()


@contextlib.contextmanager
def campaign_progress(description: str, total_events: int) -> Iterator:
    """Yields on_progress(status) for farm.campaign.run.execute."""
    progress = bar()
    task = progress.add_task(description, total=total_events, info="starting actors")
    progress.start()

    def on_progress(status: dict) -> None:
        rate = status.get("events_per_second") or 0.0
        progress.update(
            task,
            completed=status["events_done"],
            info=f"{status['shards_done']}/{status['shards_total']} shards, {rate:,.0f} ev/s",
        )

    try:
        yield on_progress
    finally:
        progress.stop()
