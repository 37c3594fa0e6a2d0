"""glibc malloc settings for sampling processes: one arena, batch buffers reused, never unmapped.

Sampling a batch on the CPU makes temporaries of batch x voxels doubles (preprocessing inverse:
44 MB for 15k DS1 showers, 212 MB for 4096 DS2 showers). glibc serves requests above its mmap
threshold (at most 32 MB, however it adapts) with a fresh mmap and frees them with munmap, and
trims thread arenas with MADV_DONTNEED, so every batch page-faults its memory in again: with 15k
DS1 batches the bare sampler spent more system time than user time, and a writer thread of the
same process turned each munmap into a TLB shootdown on the other core. MALLOC_ENV keeps one arena
(threads share the main heap), serves requests up to 512 MiB from the heap and returns free
top-of-heap memory only beyond 1 GiB, so batches reuse pages already mapped and a process's
resident memory stays near its peak (`bench/gpu_campaign.py --allocator glibc` measures without).

glibc reads these variables when a process starts, so they go to processes farm starts
(generation actors and Serve replicas, in their runtime_env) and to scripts that re-execute
themselves (`reexec_with`); other C libraries ignore them. A MALLOC_ENV variable the caller sets
wins over farm's value; FARM_ALLOCATOR=glibc leaves glibc's defaults (farm adds none).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from farm.errors import FarmError

MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(512 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
}
"""glibc's environment names for M_ARENA_MAX, M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (bytes)."""

ALLOCATOR_VAR = "FARM_ALLOCATOR"
ALLOCATORS = ("farm", "glibc")


def allocator(environ: Mapping[str, str] = os.environ) -> str:
    """FARM_ALLOCATOR's value (default farm); FarmError naming the allowed values otherwise."""
    name = environ.get(ALLOCATOR_VAR) or "farm"
    if name not in ALLOCATORS:
        raise FarmError(f"{ALLOCATOR_VAR}={name!r}: use {' or '.join(ALLOCATORS)}")
    return name


def malloc_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The MALLOC_ENV variables a sampling process gets: the caller's own, then farm's unless glibc."""
    own = {key: environ[key] for key in MALLOC_ENV if environ.get(key)}
    return own if allocator(environ) == "glibc" else MALLOC_ENV | own


def reexec_with(name: str) -> None:
    """Re-execute this script (sys.argv) with FARM_ALLOCATOR=name and its malloc_env, if not yet."""
    environ = {**os.environ, ALLOCATOR_VAR: name}
    want = malloc_env(environ)
    if os.environ.get(ALLOCATOR_VAR) == name and all(
        os.environ.get(k) == v for k, v in want.items()
    ):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], environ | want)
