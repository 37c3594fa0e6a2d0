"""Ray at the edge: connect or start a local instance, and storage for Ray Train results.

A local instance (no RAY_ADDRESS) listens on 127.0.0.1 only: GCS, raylet, object manager,
dashboard and runtime-env agents all bind the loopback address, so nothing on the machine's
network interfaces answers. To run on a cluster, start it with `ray start` and set RAY_ADDRESS.
A reaper process (`python -m farm.ray_utils PID`) stops the local instance's processes as soon
as the farm process that started it dies, even by SIGKILL; Ray's own agents otherwise linger
for about a minute (they try to report the raylet's death to the dead GCS).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from farm import store
from farm.errors import FarmError, Stopped

# Ray logs this notice each time it starts a local instance with token authentication on by
# default (Ray >= 2.60 with RAY_AUTH_MODE unset); the README explains it once instead.
AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS if set, else start a fresh local Ray (dashboard off, quiet logs)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    kwargs = dict(
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        configure_logging=False,
    )
    handler = signal.getsignal(signal.SIGTERM)
    try:
        if os.environ.get("RAY_ADDRESS"):
            check_reachable(os.environ["RAY_ADDRESS"])
            ray.init(address=os.environ["RAY_ADDRESS"], **kwargs)
        else:
            hide_auth_notice()
            start_local_ray(num_cpus or os.cpu_count() or 1, kwargs)
    except SystemExit as exc:  # Ray's own SIGTERM handler, active while ray.init runs
        if exc.code == signal.SIGTERM and callable(handler):
            raise Stopped("SIGTERM while Ray started") from None
        raise
    finally:
        keep_sigterm_handler(handler)


CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One FarmError line naming RAY_ADDRESS unless its HOST:PORT accepts a TCP connection.

    ray.init otherwise waits minutes for an absent GCS. "auto", "local" and other forms that
    name no host and port are left to Ray.
    """
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise FarmError(
            f"Ray cluster at RAY_ADDRESS={address} is unreachable ({why}): start it with "
            "`ray start --head` or unset RAY_ADDRESS for a local Ray"
        ) from None


def keep_sigterm_handler(handler: object) -> None:
    """Put a Python SIGTERM handler back after ray.init (Ray's failure handler replaces it).

    farm's CLI turns SIGTERM into an exception so that runs end KILLED and campaigns record the
    stop; Ray's C++ failure-signal handler would otherwise end the process on the spot.
    """
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


LOOPBACK = "127.0.0.1"


def start_local_ray(num_cpus: int, kwargs: dict) -> None:
    """A fresh local Ray instance on 127.0.0.1 only, with a reaper should this process die.

    Ray turns a loopback node address into the machine's external one unless it runs without
    cluster support (its ENABLE_RAY_CLUSTER constant, read when the node address is resolved);
    farm clears it for the one call, so every Ray process of the instance binds 127.0.0.1.
    """
    import ray
    from ray._private import ray_constants

    package_root_first_on_worker_path()
    cluster = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK, **kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster
    if ray.is_initialized():
        start_reaper()


PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
"""The directory holding the farm and models packages (the clone for an editable install)."""


def package_root_first_on_worker_path() -> None:
    """Put PACKAGE_ROOT first on the PYTHONPATH the local instance's workers inherit.

    Ray adds the driver's working directory to its workers' sys.path. A folder there named
    farm or models without an __init__.py (a FARM_HOME called farm, the clone seen from its
    parent) is a namespace package to Python's path finder, which answers before an editable
    install's finder is asked: workers then fail on `import farm.train.worker`. A regular
    package on an earlier path entry wins over any namespace folder.
    """
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if PACKAGE_ROOT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, *parts])


def start_reaper() -> None:
    """Start `python -m farm.ray_utils PID`: it stops this process's Ray processes once it dies."""
    subprocess.Popen(
        [sys.executable, "-m", "farm.ray_utils", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


RAY_MARKS = ("ray::", "gcs_server", "raylet", "/ray/")


def is_ray_process(cmdline: list[str], name: str) -> bool:
    """Whether a process is one of Ray's (GCS, raylet, workers, agents, helpers)."""
    text = " ".join([name, *cmdline])
    return any(mark in text for mark in RAY_MARKS)


def _ray_descendants(driver, reaper_pid: int) -> dict[tuple[int, float], object]:
    """The driver's Ray descendants, keyed by (pid, start time) so a reused pid never matches."""
    import psutil

    found = {}
    for child in driver.children(recursive=True):
        try:
            if child.pid != reaper_pid and is_ray_process(child.cmdline(), child.name()):
                found[(child.pid, child.create_time())] = child
        except psutil.Error:
            continue
    return found


def reap(driver_pid: int, interval: float = 1.0, grace: float = 3.0) -> int:
    """Watch a farm process; when it is gone, stop the Ray processes it had started; how many.

    Ray's processes are remembered while the driver lives (once it dies they are re-parented
    and can no longer be found as its children), then sent SIGTERM, and SIGKILL after `grace`.
    """
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    tracked: dict[tuple[int, float], object] = {}
    while _alive(driver):
        tracked.update(_ray_descendants(driver, os.getpid()))
        time.sleep(interval)
    alive = [p for p in tracked.values() if _alive(p)]
    for proc in alive:
        _signal(proc, signal.SIGTERM)
    _, still = psutil.wait_procs(alive, timeout=grace)
    for proc in still:
        _signal(proc, signal.SIGKILL)
    return len(alive)


def _alive(proc) -> bool:
    """Whether a psutil process still runs (a zombie does not; neither does a reused pid)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc, signum: int) -> None:
    """Send a signal to a process that may already be gone."""
    import psutil

    with contextlib.suppress(psutil.Error):
        proc.send_signal(signum)


class _DropAuthNotice(logging.Filter):
    """Drops Ray's token-authentication notice and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the notice, True for every other record."""
        return not record.getMessage().startswith(AUTH_NOTICE)


def hide_auth_notice() -> None:
    """Hide Ray's notice that a new local instance uses token authentication; the mode stays.

    Token authentication itself is untouched: Ray still turns it on for a local instance when
    RAY_AUTH_MODE is unset, and any RAY_AUTH_MODE the user set is Ray's to honour.
    """
    logger = logging.getLogger(AUTH_LOGGER)
    if not any(isinstance(f, _DropAuthNotice) for f in logger.filters):
        logger.addFilter(_DropAuthNotice())


def storage_for_ray(url: str):
    """(storage_path, storage_filesystem) for RunConfig: local paths as is, remote through fsspec."""
    if store.is_local(url):
        path = store.normalize(url)
        os.makedirs(path, exist_ok=True)
        return path, None
    import pyarrow.fs

    fs, path = store.filesystem(url)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


if __name__ == "__main__":
    reap(int(sys.argv[1]))
