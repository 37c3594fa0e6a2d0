"""Shared fixtures: one Ray session (2 CPUs, no dashboard), a throwaway farm home, a moto S3 server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid

# numpy's OpenBLAS threads fight the 2-core CI machine's other processes (a 211x211 eigh took
# 0.1 s with default threads, 3 ms with one); tests, their Ray workers and CLI subprocesses use one
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by the whole test session."""
    import ray

    if not ray.is_initialized():
        # address="local": always a fresh instance, never another session's cluster on the machine
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def farm_home(tmp_path, monkeypatch):
    """A fresh FARM_HOME (store, MLflow SQLite, artifacts) for one test."""
    home = tmp_path / "farm-home"
    monkeypatch.setenv("FARM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1: the same code path as AWS or MinIO. Yields the endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the moto server; sets the AWS variables farm reads. Yields 's3://bucket'."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("FARM_S3_ENDPOINT_URL", s3_server)
    name = f"farm-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    yield f"s3://{name}"


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll `url` until it answers 200; raise if the process exits or the deadline passes."""
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args[0]} exited with {proc.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1: SQLite backend, artifacts proxied to moto S3.

    Yields (tracking URI, artifacts destination). Clients need no S3 credentials: the server
    serves artifacts (mlflow-artifacts:/ URIs) and holds the S3 settings itself.
    """
    import boto3

    folder = tmp_path_factory.mktemp("mlflow-server")
    bucket = f"mlflow-{uuid.uuid4().hex[:10]}"
    s3_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
    }
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    destination = f"s3://{bucket}/mlartifacts"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{folder}/mlflow.db"),
            *("--artifacts-destination", destination),
        ],
        env={**env, **s3_env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{uri}/health", proc, timeout=90)
        yield uri, destination
    finally:
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


OBJECT_STORE_BYTES = 256 * 2**20
"""Each test node's object store (Ray's default takes 30% of the machine's memory)."""


class RayNodes:
    """A Ray cluster of `ray start` processes on this machine, each node with its own temp dir.

    Nodes are found and stopped by their temp dir (never `ray stop`, which stops every Ray
    process on the machine, other sessions' included). Token authentication is on, with a
    token of this cluster's own that drivers get through `env`.
    """

    # fast node-failure detection (the defaults take tens of seconds)
    SYSTEM_CONFIG = (
        '{"health_check_initial_delay_ms": 0, "health_check_period_ms": 200, '
        '"health_check_timeout_ms": 500, "health_check_failure_threshold": 3}'
    )

    def __init__(self, root) -> None:
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
        }
        self.nodes: list[str] = []  # temp dirs, head first
        self._raylets: dict[str, object] = {}

    def _start(self, name: str, args: list[str]) -> str:
        """`ray start` one node with free ports of its own; returns its temp dir."""
        temp_dir = str(self.root / name)
        ports = [
            *("--dashboard-agent-listen-port", str(_free_port())),
            *("--dashboard-agent-grpc-port", str(_free_port())),
            *("--metrics-export-port", str(_free_port())),
            *("--runtime-env-agent-port", str(_free_port())),
            *("--object-store-memory", str(OBJECT_STORE_BYTES)),
        ]
        self.nodes.append(temp_dir)
        done = subprocess.run(
            ["ray", "start", *args, "--temp-dir", temp_dir, "--disable-usage-stats", *ports],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray start {name} failed: {done.stderr[-2000:]}")
        return temp_dir

    def start_head(self, num_cpus: int = 1) -> None:
        """The head node: GCS on self.port, no dashboard UI, fast failure detection."""
        self._start(
            "head",
            [
                *("--head", "--port", str(self.port), "--num-cpus", str(num_cpus)),
                *("--include-dashboard", "false", "--dashboard-port", str(_free_port())),
                *("--system-config", self.SYSTEM_CONFIG),
            ],
        )

    def add_worker(self, name: str, num_cpus: int = 1, resources: str = "{}") -> str:
        """A worker node joining the head (`ray start --address`); returns its temp dir."""
        args = ["--address", self.address, "--num-cpus", str(num_cpus), "--resources", resources]
        return self._start(name, args)

    def processes(self, temp_dir: str) -> list:
        """The node's processes: every process whose command line names its temp dir, and
        their descendants (the raylet's workers)."""
        import psutil

        found = {}
        for proc in psutil.process_iter(["cmdline"]):
            if any(
                temp_dir + "/" in part or part.endswith(temp_dir)
                for part in proc.info["cmdline"] or []
            ):
                found[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    found.update({c.pid: c for c in proc.children(recursive=True)})
        return list(found.values())

    def raylet(self, temp_dir: str):
        """The node's raylet process (its workers, generation actors included, are children)."""
        if temp_dir not in self._raylets:
            procs = self.processes(temp_dir)
            self._raylets[temp_dir] = next(p for p in procs if p.name() == "raylet")
        return self._raylets[temp_dir]

    def kill(self, temp_dir: str, grace: float = 0.0) -> float:
        """Stop one node's processes: SIGKILL at once when grace is 0 (as when a machine goes
        away), else SIGTERM first. Returns when the raylet and its workers were signalled."""
        import signal

        import psutil

        first = []
        if grace == 0.0 and temp_dir in self._raylets:  # raylet and workers first, no scan
            raylet = self._raylets[temp_dir]
            with contextlib.suppress(psutil.Error):
                first = [raylet, *raylet.children(recursive=True)]
        signum = signal.SIGTERM if grace else signal.SIGKILL
        for proc in first:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signum)
        at = time.time()
        procs = [p for p in self.processes(temp_dir) if p not in first]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signum)
        _, alive = psutil.wait_procs(first + procs, timeout=grace or 5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return at

    def shutdown(self) -> None:
        """Stop every node this cluster started, workers first, then remove the temp dirs."""
        import shutil

        for temp_dir in reversed(self.nodes):
            self.kill(temp_dir, grace=3.0)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ray_nodes():
    """A head node started with `ray start --head` (1 CPU); tests add worker nodes. Stopped after.

    The root is short (Unix socket paths must fit in 107 bytes) and unique to this test.
    """
    import tempfile
    from pathlib import Path

    cluster = RayNodes(Path(tempfile.mkdtemp(prefix="farm-rc-", dir="/tmp")))
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    return _free_port()


@pytest.fixture
def cli_error():
    """Run `python -m farm.cli ARGS` with extra environment; asserts exit 2 and one stderr line,
    which it returns."""

    def run(args: list[str], **env: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "farm.cli", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-3000:])
        return lines[0]

    return run
