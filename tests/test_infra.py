"""infra/ checked offline: Kubernetes schemas, the KubeRay CRDs' required fields, compose, image.

KubeRay fields follow the ray.io/v1 Go types (ray-operator/apis/ray/v1/*_types.go, KubeRay >= 1.5):
a field without `omitempty` is required. Nothing here needs Docker or a Kubernetes cluster.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import shlex
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import ray
import yaml

from farm.campaign.pool import ENV_TO_ACTORS
from farm.cli import build_parser
from farm.errors import FarmError
from farm.registry import parse_ref
from farm.serve.app import ServeOptions
from farm.specs import load_job

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S_VERSION = "1.37.0"
IMAGE = "farm:0.1.0"

# ray.io/v1 fields: (required, allowed) per object
CLUSTER_SPEC = (
    {"headGroupSpec"},
    {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
     "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
     "gcsFaultToleranceOptions", "authOptions"},
)  # fmt: skip
HEAD_GROUP = (
    {"template", "rayStartParams"},
    {"template", "rayStartParams", "serviceType", "headService", "enableIngress"},
)
WORKER_GROUP = (
    {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"},
    {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template", "replicas",
     "numOfHosts", "scaleStrategy", "idleTimeoutSeconds", "suspend"},
)  # fmt: skip
JOB_SPEC = (
    {"entrypoint"},
    {"entrypoint", "rayClusterSpec", "clusterSelector", "submissionMode", "activeDeadlineSeconds",
     "backoffLimit", "submitterPodTemplate", "submitterConfig", "metadata", "runtimeEnvYAML",
     "jobId", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
     "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "deletionPolicy",
     "managedBy"},
)  # fmt: skip
SERVICE_SPEC = (
    {"serveConfigV2", "rayClusterConfig"},
    {"serveConfigV2", "rayClusterConfig", "serveService"},
)
AUTH_MODES = {"disabled", "token"}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
FARM_READS = {*ENV_TO_ACTORS, "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((INFRA / name).read_text()) if d is not None]


def _one(name: str) -> dict:
    (doc,) = _docs(name)
    return doc


def _fields(obj: dict, rules: tuple[set[str], set[str]], where: str) -> None:
    required, allowed = rules
    assert required <= obj.keys(), f"{where}: missing {sorted(required - obj.keys())}"
    assert obj.keys() <= allowed, f"{where}: unknown {sorted(obj.keys() - allowed)}"


def _k8s(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _check_cluster_spec(spec: dict, where: str) -> list[dict]:
    """The RayClusterSpec rules; returns every pod template, each validated as a core object."""
    _fields(spec, CLUSTER_SPEC, where)
    assert spec["rayVersion"] == ray.__version__  # the Ray of the image (pyproject's pin)
    assert spec.get("authOptions", {}).get("mode", "disabled") in AUTH_MODES
    head = spec["headGroupSpec"]
    _fields(head, HEAD_GROUP, f"{where}.headGroupSpec")
    groups = spec.get("workerGroupSpecs", [])
    templates = [head["template"]]
    for g in groups:
        _fields(g, WORKER_GROUP, f"{where}.workerGroupSpecs[{g.get('groupName')}]")
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]
        templates.append(g["template"])
    assert len({g["groupName"] for g in groups}) == len(groups)
    for params in [head["rayStartParams"], *(g["rayStartParams"] for g in groups)]:
        assert all(isinstance(v, str) for v in params.values()), params  # map[string]string
    for template in templates:
        _k8s(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": template,
            }
        )
        assert {c["image"] for c in template["spec"]["containers"]} == {IMAGE}
    gpu = [
        g
        for g in groups
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert gpu, f"{where}: no GPU worker group"
    assert "nvidia.com/gpu" not in str(head["template"]), f"{where}: the head has a GPU"
    return templates


def test_every_yaml_parses():
    files = sorted(INFRA.rglob("*.yaml"))
    assert len(files) >= 6
    for f in files:
        assert _docs(f.relative_to(INFRA).as_posix()), f


def test_configmap_is_a_valid_core_object_with_what_farm_reads():
    cm = _one("k8s/farm-env.yaml")
    _k8s(cm)
    assert cm["data"].keys() <= FARM_READS
    assert cm["data"]["FARM_HOME"].startswith("s3://")
    assert cm["data"]["MLFLOW_TRACKING_URI"].startswith("http")


def test_raycluster_has_the_crd_fields_and_valid_pod_templates():
    cluster = _one("k8s/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    templates = _check_cluster_spec(cluster["spec"], "RayCluster")
    for template in templates:  # every pod has farm's environment
        (container,) = template["spec"]["containers"]
        refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
        assert refs == {"farm-env", "farm-s3"}


@pytest.mark.parametrize(("name", "kind"), [("campaign", "campaign"), ("train", "train")])
def test_rayjob_entrypoint_is_a_farm_command_on_a_farm_job_file(name, kind):
    job = _one(f"k8s/rayjob-{name}.yaml")
    cluster = _one("k8s/raycluster.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    _fields(spec, JOB_SPEC, "RayJob")
    assert spec["submissionMode"] in SUBMISSION_MODES
    # one of the two ways to get a cluster; the selector names the RayCluster above
    assert ("clusterSelector" in spec) != ("rayClusterSpec" in spec)
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "farm"
    args = build_parser().parse_args(argv[1:])
    path = Path(args.job)
    assert path.parts[:3] == ("/", "opt", "farm")  # the image's WORKDIR holds jobs/
    assert load_job(ROOT.joinpath(*path.parts[3:]), kind=kind).kind == kind


def test_rayservice_skeleton_speaks_farm_serve_options():
    svc = _one("k8s/rayservice-serve.yaml")
    assert (svc["apiVersion"], svc["kind"]) == ("ray.io/v1", "RayService")
    _fields(svc["spec"], SERVICE_SPEC, "RayService")
    templates = _check_cluster_spec(svc["spec"]["rayClusterConfig"], "RayService.rayClusterConfig")
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    module, _, attr = app["import_path"].partition(":")
    assert module == ServeOptions.__module__
    builder = getattr(importlib.import_module(module), attr)
    with pytest.raises(FarmError, match="allowed are models"):
        builder({**app["args"], "replica": 2})  # a misspelt flag is refused before any lookup
    options = {f.name for f in dataclasses.fields(ServeOptions)}
    assert app["args"].keys() - {"models"} <= options
    assert all(parse_ref(ref).alias for ref in app["args"]["models"])
    ports = {p["containerPort"] for p in templates[0]["spec"]["containers"][0]["ports"]}
    assert serve["http_options"]["port"] in ports


def _compose() -> dict:
    return _one("compose/compose.yaml")


def _flag(command: list[str], name: str) -> str:
    (value,) = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    return value


def test_compose_stack_is_consistent():
    services = _compose()["services"]
    assert services.keys() == {
        "minio",
        "minio-init",
        "postgres",
        "mlflow",
        "ray-head",
        "ray-worker",
    }
    # every published port binds the loopback only
    for s in services.values():
        assert all(p.startswith("127.0.0.1:") for p in s.get("ports", []))
    buckets = set(re.findall(r"local/(\w+)", services["minio-init"]["command"][0]))
    mlflow = services["mlflow"]["command"]
    assert _flag(mlflow, "backend-store-uri").startswith("postgresql://mlflow:")
    assert "@postgres:5432/" in _flag(mlflow, "backend-store-uri")
    assert _flag(mlflow, "artifacts-destination").removeprefix("s3://").split("/")[0] in buckets
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    mlflow_port = _flag(mlflow, "port")
    head, worker = services["ray-head"], services["ray-worker"]
    assert _flag(worker["command"], "address") == f"ray-head:{_flag(head['command'], 'port')}"
    for node in (head, worker):
        env = node["environment"]
        assert env.keys() <= FARM_READS
        assert env["FARM_HOME"].removeprefix("s3://").split("/")[0] in buckets
        assert env["FARM_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
        assert node["image"] == IMAGE
    stages = set(re.findall(r"^FROM \S+ AS (\w+)", (INFRA / "Dockerfile").read_text(), re.M))
    for s in services.values():
        if "build" in s:
            assert s["build"]["target"] in stages
            assert (INFRA / "compose" / s["build"]["context"] / s["build"]["dockerfile"]).is_file()


def test_compose_variables_are_all_in_the_example_env():
    text = (INFRA / "compose" / "compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    example = (INFRA / "compose" / "local.env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, re.M))
    assert used == defined


def test_dockerfile_pins_pyproject_and_copies_what_exists():
    text = (INFRA / "Dockerfile").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in deps if "==" in d)
    assert f'"torch=={pins["torch"]}"' in text and f'"mlflow=={pins["mlflow"]}"' in text
    froms = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert froms[-1][1] == "farm"  # the default target
    (cuda_arg,) = re.findall(r"^ARG CUDA_IMAGE=(\S+)", text, re.M)
    assert cuda_arg.startswith("nvidia/cuda:12.") and froms[-1][0] == "${CUDA_IMAGE}"
    copied = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    kept = set(re.findall(r"^!(\S+?)/?$", (INFRA / "Dockerfile.dockerignore").read_text(), re.M))
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists() and source in kept, source
