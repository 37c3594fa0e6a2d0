"""The local Ray instance farm starts: loopback only, and gone with the process that started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil

DRIVER = """
import json, os, sys
import psutil, ray
from farm.ray_utils import ensure_ray
ensure_ray(num_cpus=1)

@ray.remote
def pid():
    return os.getpid()

ray.get(pid.remote())  # a worker process too
me = psutil.Process()
listening, children = set(), []
for proc in me.children(recursive=True):
    children.append([proc.pid, proc.create_time(), " ".join(proc.cmdline())[:200]])
    try:
        conns = proc.net_connections(kind="inet")
    except psutil.Error:
        continue
    listening |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
print(json.dumps({"listening": sorted(listening), "children": children}), flush=True)
sys.stdin.readline()  # wait until the test is done with us
"""
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def start_driver(tmp_path) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["HOME"] = str(tmp_path)  # Ray's token file, not the user's
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    assert line, "the driver did not start Ray"
    return proc, json.loads(line)


def test_local_ray_listens_on_loopback_only(tmp_path):
    proc, info = start_driver(tmp_path)
    try:
        assert info["listening"], info  # Ray's servers were found
        assert set(info["listening"]) <= LOOPBACK, info["listening"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)


def _process(pid: int, created: float) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    return proc if abs(proc.create_time() - created) < 0.01 else None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_ray_processes_end_with_a_killed_driver(tmp_path):
    proc, info = start_driver(tmp_path)
    children = [(_process(pid, t), cmd) for pid, t, cmd in info["children"]]
    reapers = [p for p, cmd in children if p is not None and "farm.ray_utils" in cmd]
    ray_procs = [p for p, cmd in children if p is not None and "farm.ray_utils" not in cmd]
    assert len(reapers) == 1 and ray_procs, info["children"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reapers[0].wait(timeout=120)  # the reaper exits once it has stopped the instance
    assert [p.name() for p in ray_procs if _running(p)] == []


def test_reaper_ignores_a_driver_that_is_already_gone():
    from farm.ray_utils import reap

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert reap(dead.pid) == 0
