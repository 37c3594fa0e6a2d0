"""A training run's MLflow bookkeeping and its resume index in the store.

A train run is identified by the hash of its resolved spec; FARM_HOME/train/<job>/<hash>.json
(`RunIndex`) maps it to its Ray run name and MLflow run, so rerunning an unfinished job resumes
the same Ray Train run and the same MLflow run (no duplicates).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from farm import store
from farm.specs import resolved

SPEC_SECTIONS = ("data", "teacher", "model", "distill", "optim", "resources")


class RunIndex(BaseModel):
    """FARM_HOME/train/<job>/<spec hash>.json: the Ray run and MLflow run of one resolved job."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    run_name: str
    mlflow_run_id: str
    status: Literal["running", "failed", "finished"] = "running"
    version: str | None = None


def spec_hash(job: Any) -> str:
    """12 hex digits identifying a resolved job."""
    return hashlib.sha256(json.dumps(resolved(job), sort_keys=True).encode()).hexdigest()[:12]


def _index_url(job: Any) -> str:
    return store.join(store.home(), "train", job.name, f"{spec_hash(job)}.json")


def read_index(job: Any) -> RunIndex | None:
    """The job's resume index, or None if it never ran."""
    url = _index_url(job)
    return RunIndex.model_validate_json(store.read_text(url)) if store.exists(url) else None


def write_index(job: Any, index: RunIndex) -> None:
    """Write the job's resume index."""
    store.write_text(_index_url(job), index.model_dump_json(indent=2))


def flat_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's sections as dotted parameters (MLflow params)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    walk("", {k: spec[k] for k in SPEC_SECTIONS if spec.get(k) is not None})
    return flat


def log_spec(client, run_id: str, job: Any) -> None:
    """Params (flattened) and the resolved spec as an artifact (job.yaml)."""
    import yaml
    from mlflow.entities import Param

    spec = resolved(job)
    params = [Param(k, str(v)[:500]) for k, v in flat_params(spec).items()]
    client.log_batch(run_id, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "job.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(spec, fh, sort_keys=False)
        client.log_artifact(run_id, path)
