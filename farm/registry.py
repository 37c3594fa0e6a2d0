"""MLflow tracking and Model Registry at the edge: SQLite backend in the farm store by default.

A registered version's source is the run artifact folder holding weights.safetensors + model.json;
loading downloads that folder and rebuilds the model from JSON and safetensors (never pickle).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm import store
from farm.cards import ModelCard, parse_card
from farm.errors import FarmError

MODEL_ARTIFACT_PATH = "model"
REF_PATTERN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[A-Za-z][\w-]*)|/(?P<version>\d+))?$"
)


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else SQLite at FARM_HOME/mlflow.db (needs a local farm home)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = store.home()
    if not store.is_local(home):
        raise FarmError(
            f"FARM_HOME={home} is remote: set MLFLOW_TRACKING_URI to a shared MLflow server "
            "(SQLite needs a local disk)"
        )
    os.makedirs(home, exist_ok=True)
    return f"sqlite:///{home}/mlflow.db"


def artifact_root() -> str:
    """Where run artifacts go: FARM_ARTIFACT_ROOT, else FARM_HOME/mlartifacts."""
    return os.environ.get("FARM_ARTIFACT_ROOT") or store.join(store.home(), "mlartifacts")


SERVER_SCHEMES = ("http://", "https://")
HEALTH_TIMEOUT_S = 5.0
_reachable: set[str] = set()


def is_server(uri: str) -> bool:
    """Whether a tracking URI names an MLflow server (HTTP) rather than a database or folder."""
    return uri.lower().startswith(SERVER_SCHEMES)


def check_reachable(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """One FarmError line naming the address unless the MLflow server at `uri` answers /health.

    Checked once per process and URI, before any call, so an unreachable server fails fast
    (MLflow's own client retries for minutes) and nothing is half-registered.
    """
    import urllib.error
    import urllib.request

    if uri in _reachable:
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            ok = response.status == 200
    except urllib.error.HTTPError as exc:
        ok, why = False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        ok = False
    else:
        why = "no healthy answer"
    if not ok:
        raise FarmError(
            f"MLflow server {uri} is unreachable ({why}): start it or fix MLFLOW_TRACKING_URI"
        )
    _reachable.add(uri)


def _configure_s3_env() -> None:
    endpoint = store.s3_endpoint()
    if endpoint:
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", endpoint)


def client():
    """An MlflowClient on farm's tracking and registry backend."""
    import logging

    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _configure_s3_env()
    uri = tracking_uri()
    if is_server(uri):
        check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(name: str) -> str:
    """The MLflow experiment for a job name, created with artifacts in the farm store.

    On an MLflow server without FARM_ARTIFACT_ROOT, the server's artifact store holds them.
    """
    from mlflow.exceptions import MlflowException

    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None  # the server's artifact store
    if not is_server(tracking_uri()) or os.environ.get("FARM_ARTIFACT_ROOT"):
        location = store.join(artifact_root(), name)
        if store.is_local(location):
            location = "file://" + store.normalize(location)
    try:
        return c.create_experiment(name, artifact_location=location)
    except MlflowException as exc:  # created meanwhile by a concurrent job
        if not _already_exists(exc):
            raise
        return c.get_experiment_by_name(name).experiment_id


def _already_exists(exc: Exception) -> bool:
    """Whether an MLflow error says the object exists (a concurrent create won the race)."""
    return "already exists" in str(exc).lower() or "RESOURCE_ALREADY_EXISTS" in str(exc)


@dataclass(frozen=True)
class ModelRef:
    """NAME, NAME@ALIAS or NAME/VERSION."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version else self.name


def parse_ref(ref: str) -> ModelRef:
    """Parse NAME, NAME@ALIAS or NAME/VERSION into a ModelRef (FarmError otherwise)."""
    m = REF_PATTERN.match(ref.strip())
    if not m:
        raise FarmError(f"invalid model reference {ref!r}: use NAME, NAME@ALIAS or NAME/VERSION")
    return ModelRef(m["name"], m["alias"], m["version"])


def resolve(ref: str | ModelRef):
    """The ModelVersion a reference points at (NAME alone means the latest version)."""
    from mlflow.exceptions import MlflowException

    r = parse_ref(ref) if isinstance(ref, str) else ref
    c = client()
    try:
        c.get_registered_model(r.name)
    except MlflowException:
        known = ", ".join(m.name for m in c.search_registered_models()) or "none registered yet"
        raise FarmError(f"model {r.name!r} not found in the registry (known: {known})") from None
    try:
        if r.alias:
            return c.get_model_version_by_alias(r.name, r.alias)
        if r.version:
            return c.get_model_version(r.name, r.version)
    except MlflowException:
        rm = c.get_registered_model(r.name)
        if r.alias:
            aliases = ", ".join(sorted(rm.aliases)) or "none"
            raise FarmError(
                f"model {r.name!r} has no alias {r.alias!r} (aliases: {aliases})"
            ) from None
        versions = ", ".join(
            sorted((str(v.version) for v in c.search_model_versions(f"name='{r.name}'")), key=int)
        )
        raise FarmError(
            f"model {r.name!r} has no version {r.version} (versions: {versions})"
        ) from None
    versions = c.search_model_versions(f"name='{r.name}'")
    return max(versions, key=lambda v: int(v.version))


def register(
    name: str,
    run_id: str,
    checkpoint_dir: str,
    *,
    aliases: list[str] = (),
    tags: dict[str, str] | None = None,
    description: str = "",
):
    """Log a checkpoint folder to a run and register it as a new version of `name`."""
    from mlflow.exceptions import MlflowException

    c = client()
    c.log_artifacts(run_id, checkpoint_dir, artifact_path=MODEL_ARTIFACT_PATH)
    try:
        c.create_registered_model(name, description=description or None)
    except MlflowException as exc:
        if not _already_exists(exc):
            raise
    source = f"{c.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"
    mv = c.create_model_version(
        name, source, run_id=run_id, tags=tags or {}, description=description or None
    )
    for alias in aliases:
        c.set_registered_model_alias(name, alias, mv.version)
    return c.get_model_version(name, mv.version)


def download(ref: str | ModelRef, dest: str | None = None) -> tuple[str, Any]:
    """Download a version's checkpoint folder; returns (local dir, ModelVersion)."""
    import mlflow

    mv = resolve(ref)
    dest = dest or tempfile.mkdtemp(prefix="farm-model-")
    client()
    path = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=dest)
    return path, mv


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded for generation: the model, its card and the MLflow version."""

    model: Any
    card: ModelCard
    version: Any

    @property
    def key(self) -> str:
        """NAME/VERSION."""
        return f"{self.version.name}/{self.version.version}"


def read_model_card(path: str, ref: str = "?") -> ModelCard:
    """The checked card of a downloaded checkpoint folder (one-line FarmError naming `ref`)."""
    from models.checkpoint import read_card

    try:
        doc = read_card(path)
    except (OSError, ValueError) as exc:
        raise FarmError(f"model {ref}: unreadable model card ({type(exc).__name__})") from None
    return parse_card(doc, ref)


def load(ref: str | ModelRef, device: str = "cpu") -> LoadedModel:
    """Download and rebuild a registered version (JSON + safetensors; never unpickles).

    The card is checked first; a model the card's config cannot build is one FarmError line.
    """
    from models.loading import load_model

    with tempfile.TemporaryDirectory(prefix="farm-model-") as dest:  # weights end in memory
        path, mv = download(ref, dest)
        key = f"{mv.name}/{mv.version}"
        card = read_model_card(path, key)
        try:
            model = load_model(path, device=device)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise FarmError(
                f"model {key}: the model card does not build a model ({_why(exc)})"
            ) from None
    return LoadedModel(model, card, mv)


def _why(exc: BaseException) -> str:
    """A short reason for a failed load: the first field of a validation error, or the type."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            first = errors()[0]
            return f"field '{'.'.join(str(p) for p in first['loc'])}': {first['msg']}"
    return type(exc).__name__


def list_models() -> list[dict[str, Any]]:
    """One row per registered model: name, latest version, aliases, last updated."""
    c = client()
    rows = []
    for rm in c.search_registered_models(order_by=["name ASC"]):
        versions = c.search_model_versions(f"name='{rm.name}'")
        latest = max((int(v.version) for v in versions), default=0)
        rows.append(
            {
                "name": rm.name,
                "versions": len(versions),
                "latest": latest,
                "aliases": ", ".join(f"{a}->v{v}" for a, v in sorted(rm.aliases.items())),
                "updated": rm.last_updated_timestamp,
            }
        )
    return rows


def show(ref: str | ModelRef) -> dict[str, Any]:
    """Everything about one version: aliases, tags, run metrics, model card, resolved spec."""
    mv = resolve(ref)
    c = client()
    rm = c.get_registered_model(mv.name)
    run = c.get_run(mv.run_id) if mv.run_id else None
    card = {}
    try:
        import mlflow

        card_path = mlflow.artifacts.download_artifacts(artifact_uri=f"{mv.source}/model.json")
        card = json.loads(Path(card_path).read_text())
    except Exception:
        card = {}
    return {
        "name": mv.name,
        "version": mv.version,
        "aliases": sorted(a for a, v in rm.aliases.items() if v == mv.version),
        "source": mv.source,
        "run_id": mv.run_id,
        "tags": dict(mv.tags),
        "metrics": dict(run.data.metrics) if run else {},
        "params": dict(run.data.params) if run else {},
        "card": card,
    }


EVAL_PREFIX, FLOOR_PREFIX = "eval.", "eval_floor."


def evaluation(mv) -> dict[str, float]:
    """The latest evaluation of a version: metric -> value, from its run's eval.* metrics."""
    if not mv.run_id:
        return {}
    metrics = client().get_run(mv.run_id).data.metrics
    return {k[len(EVAL_PREFIX) :]: v for k, v in metrics.items() if k.startswith(EVAL_PREFIX)}


def gates(mv) -> dict:
    """A version's promotion gates (its `farm.gates` tag, set from its job)."""
    from farm.evaluation.gates import parse_gates

    return parse_gates(dict(mv.tags).get("farm.gates"))


def gate_failures(mv) -> list[str]:
    """Failed promotion gates of a version: its gates against its latest evaluation."""
    from farm.evaluation.gates import gate_failures as failures

    return failures(gates(mv), evaluation(mv))


def promote(name: str, version: str, alias: str, *, force_reason: str | None = None):
    """Point `alias` at a version if its gates pass (or with a recorded reason); returns it."""
    if not re.match(r"^[A-Za-z][\w-]*$", alias) or re.match(r"^v\d+$", alias):
        raise FarmError(f"invalid alias {alias!r}: letters, digits, _ and -, not v<N>")
    mv = resolve(ModelRef(name, version=str(version)))
    failures = gate_failures(mv)
    c = client()
    if failures and not force_reason:
        raise FarmError(
            f"{name}/{version} fails its promotion gates: {'; '.join(failures)} "
            "(use --force --reason TEXT to override)"
        )
    if failures:
        c.set_model_version_tag(name, mv.version, f"farm.forced.{alias}", force_reason)
    c.set_registered_model_alias(name, alias, mv.version)
    return c.get_model_version(name, mv.version)


def log_evaluation(
    ref: str | ModelRef, metrics: dict[str, dict[str, float]], report_url: str | None = None
) -> Any:
    """Log an evaluation to a version's MLflow run; returns the version.

    Logs metrics eval.<name> and eval_floor.<name> (what its promotion gates read) and the report
    folder as artifacts.
    """
    import time

    from mlflow.entities import Metric

    mv = resolve(ref)
    if not mv.run_id:
        raise FarmError(f"model {mv.name}/{mv.version} has no MLflow run to log its evaluation to")
    c = client()
    now = int(time.time() * 1000)
    batch = [Metric(f"{EVAL_PREFIX}{k}", float(m["value"]), now, 0) for k, m in metrics.items()]
    batch += [
        Metric(f"{FLOOR_PREFIX}{k}", float(m["floor"]), now, 0)
        for k, m in metrics.items()
        if m.get("floor") is not None
    ]
    for start in range(0, len(batch), 900):
        c.log_batch(mv.run_id, metrics=batch[start : start + 900])
    if report_url and store.is_local(report_url) and Path(store.normalize(report_url)).is_dir():
        c.log_artifacts(mv.run_id, store.normalize(report_url), artifact_path="evaluation")
    return mv
