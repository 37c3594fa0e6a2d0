"""farm.allocator: the malloc settings sampling processes get, and what they change in glibc.

The physical check follows the resident memory of a process that allocates, frees and allocates
again a 96 MB buffer (a batch's temporary) in a thread: under glibc's defaults the freed buffer is
unmapped and the next one mapped afresh; under farm's settings it stays mapped and is reused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from farm.allocator import ALLOCATOR_VAR, MALLOC_ENV, allocator, malloc_env
from farm.errors import FarmError

ROUNDS = textwrap.dedent(
    """
    import os, threading
    import numpy as np

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    steps = []
    def rounds():
        a = np.ones(12_000_000)  # 96 MB of float64, a batch's temporary
        steps.append(rss())
        del a
        steps.append(rss())  # freed: unmapped (glibc) or kept for the next batch (farm)
        b = np.ones(12_000_000)
        steps.append(rss())  # the same pages again (farm) or freshly mapped ones (glibc)
        del b
    t = threading.Thread(target=rounds)
    t.start()
    t.join()
    print(*steps)
    """
)
MB = 1 << 20


def test_defaults_then_callers_values_win():
    assert malloc_env({}) == MALLOC_ENV
    assert malloc_env({"MALLOC_ARENA_MAX": "4", "PATH": "/bin"}) == {
        **MALLOC_ENV,
        "MALLOC_ARENA_MAX": "4",
    }


def test_glibc_adds_nothing_but_keeps_the_callers_own():
    assert malloc_env({ALLOCATOR_VAR: "glibc"}) == {}
    assert malloc_env({ALLOCATOR_VAR: "glibc", "MALLOC_ARENA_MAX": "2"}) == {
        "MALLOC_ARENA_MAX": "2"
    }


def test_an_unknown_allocator_is_one_line_naming_the_choices():
    with pytest.raises(FarmError, match=r"^FARM_ALLOCATOR='jemalloc': use farm or glibc$"):
        allocator({ALLOCATOR_VAR: "jemalloc"})


def test_generation_actors_get_the_settings(monkeypatch):
    from farm.campaign.pool import _actor_env

    for key in MALLOC_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv(ALLOCATOR_VAR, raising=False)
    assert MALLOC_ENV.items() <= _actor_env().items()
    monkeypatch.setenv(ALLOCATOR_VAR, "glibc")
    assert not MALLOC_ENV.keys() & _actor_env().keys()


def _rss_steps(environ: dict[str, str]) -> list[int]:
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", ROUNDS],
        env={**clean, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [int(x) for x in proc.stdout.split()]


def test_farm_settings_keep_a_freed_batch_buffer_mapped_for_the_next_one():
    allocated, freed, again = _rss_steps({})
    assert allocated - freed > 80 * MB  # glibc: munmap on free, the next batch maps afresh
    allocated, freed, again = _rss_steps(MALLOC_ENV)
    assert abs(allocated - freed) < 4 * MB  # farm: kept in the heap
    assert abs(again - allocated) < 4 * MB  # and reused, not a second 96 MB


def test_reexec_with_runs_the_script_again_under_the_settings(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            from farm.allocator import reexec_with
            print("start", flush=True)
            reexec_with(sys.argv[1])
            print("env", os.environ.get("FARM_ALLOCATOR"), os.environ.get("MALLOC_ARENA_MAX"))
            """
        )
    )
    clean = {k: v for k, v in os.environ.items() if k not in (*MALLOC_ENV, ALLOCATOR_VAR)}
    for name, arena in (("farm", MALLOC_ENV["MALLOC_ARENA_MAX"]), ("glibc", None)):
        proc = subprocess.run(
            [sys.executable, str(script), name], env=clean, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n") == ["start", "start", f"env {name} {arena}", ""]
