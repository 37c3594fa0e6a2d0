"""Fault injection for tests and drills: an fsspec filesystem whose writes fail transiently.

`flaky:///abs/path` is the local filesystem, except that the first upload to each final path
raises OSError (remembered in a marker file, so it holds across processes and Ray actors); the
retry succeeds. Used to prove that transient storage errors are retried and nothing is lost.
"""

from __future__ import annotations

import hashlib
import os

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
