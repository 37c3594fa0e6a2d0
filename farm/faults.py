"""Fault injection for tests and drills: flaky storage, and campaign actors killed on cue.

`flaky:///abs/path` is the local filesystem, except that the first upload to each final path
raises OSError (remembered in a marker file, so it holds across processes and Ray actors); the
retry succeeds. Used to prove that transient storage errors are retried and nothing is lost.

`FARM_FAULT_KILL_ACTOR=<stage>:<folder>` SIGKILLs the first campaign actor (once across all
processes: a marker file in <folder>) that reaches the stage: `loading` (while it loads its model)
or `writing` (a shard file written to its temporary name, not yet renamed or uploaded). Only
processes that called `arm_actor` (the campaign actors) can be killed.
"""

from __future__ import annotations

import hashlib
import os
import signal

from fsspec.implementations.local import LocalFileSystem


class FlakyFileSystem(LocalFileSystem):
    """Local filesystem whose first put to every path fails with OSError."""

    protocol = ("flaky",)
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("flaky://"):
            path = path[len("flaky://") :]
        return LocalFileSystem._strip_protocol(path)

    def put_file(self, lpath, rpath, **kwargs):
        """Upload a file, raising OSError on the first try for each final path."""
        rpath = self._strip_protocol(rpath)
        marker_dir = os.path.join(os.path.dirname(rpath), ".flaky-markers")
        os.makedirs(marker_dir, exist_ok=True)
        marker = os.path.join(marker_dir, hashlib.sha1(rpath.encode()).hexdigest())
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError(f"injected transient storage failure writing {rpath}")
        os.makedirs(os.path.dirname(rpath), exist_ok=True)
        return super().put_file(lpath, rpath, **kwargs)


def failures_injected(directory: str) -> int:
    """How many injected failures happened under a directory (one marker each)."""
    count = 0
    for root, _dirs, files in os.walk(directory):
        if os.path.basename(root) == ".flaky-markers":
            count += len(files)
    return count


KILL_ENV = "FARM_FAULT_KILL_ACTOR"
KILL_STAGES = ("loading", "writing")
_armed = False


def arm_actor() -> None:
    """Let FARM_FAULT_KILL_ACTOR kill this process (campaign actors call this when they start)."""
    global _armed
    _armed = True


def kill_once(stage: str) -> None:
    """SIGKILL this armed process if FARM_FAULT_KILL_ACTOR names `stage` and nobody died yet."""
    want, _, folder = os.environ.get(KILL_ENV, "").partition(":")
    if not _armed or want != stage or not folder:
        return
    os.makedirs(folder, exist_ok=True)
    try:
        fd = os.open(os.path.join(folder, f"killed-{stage}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def kills_injected(folder: str) -> list[str]:
    """The stages at which FARM_FAULT_KILL_ACTOR killed an actor (one marker each)."""
    if not os.path.isdir(folder):
        return []
    return sorted(n.removeprefix("killed-") for n in os.listdir(folder) if n.startswith("killed-"))
