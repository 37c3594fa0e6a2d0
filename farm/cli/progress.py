"""Rich consoles and progress displays shared by the CLI commands."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Width for output that is not a terminal (a log file, a pipe, CI): wide enough that tables and
# progress lines are never squeezed; plain text is not wrapped at all (soft wrap).
LOG_WIDTH = 1000


def make_console(stderr: bool = False) -> Console:
    """A console that wraps to a terminal's width, and writes whole lines to a log, pipe or CI."""
    if writes_to_terminal(sys.stderr if stderr else sys.stdout):
        return Console(stderr=stderr)
    width = None if os.environ.get("COLUMNS") else LOG_WIDTH  # an explicit COLUMNS wins
    return Console(stderr=stderr, soft_wrap=True, width=width)


def writes_to_terminal(stream: TextIO) -> bool:
    """Whether stream is a real terminal (colour forced by FORCE_COLOR does not count)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


console = make_console(stderr=True)
out = make_console()


def bar() -> Progress:
    """A progress bar on stderr: description, bar, done/total, info, elapsed and remaining time."""
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
        """Follow the run's val_loss; the display is cosmetic, so its errors never surface."""
        from farm import registry

        client = None
        while not stop.wait(1.0):
            if "run_id" not in state:
                continue  # the run (and a store that works) exists once on_start was called
            with contextlib.suppress(Exception):
                client = client or registry.client()
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
    except BaseException:
        progress.live.transient = True  # a failed run leaves its one error line
        raise
    finally:
        stop.set()
        thread.join(timeout=5)
        progress.stop()


@contextlib.contextmanager
def campaign_progress(description: str, total_events: int) -> Iterator:
    """Yields on_progress(CampaignStatus) for farm.campaign.run.execute."""
    progress = bar()
    task = progress.add_task(description, total=total_events, info="starting actors")
    progress.start()

    def on_progress(status: dict) -> None:
        rate = status.events_per_second or 0.0
        progress.update(
            task,
            completed=status.events_done,
            info=f"{status.shards_done}/{status.shards_total} shards, {rate:,.0f} ev/s",
        )

    try:
        yield on_progress
    except BaseException:
        progress.live.transient = True  # a refused or failed campaign leaves its one error line
        raise
    finally:
        progress.stop()
