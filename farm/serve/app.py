"""The `farm serve` application: a FastAPI ingress over one Serve deployment per model.

Routes: POST /v1/models/{name}/generate, GET /v1/models, GET /healthz; OpenAPI at /docs. Every
refusal is a 4xx with a one-line JSON body {"error": ...}, never a traceback.
"""

# no `from __future__ import annotations`: Serve's class-based ingress rebuilds the routes and
# FastAPI must see the real types of their parameters
import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException

from farm import __version__, registry
from farm.errors import FarmError
from farm.serve.api import (
    ARROW_STREAM,
    GenerateRequest,
    Job,
    arrow_body,
    event_electrons,
    event_truth,
    jet_truth,
    json_body,
)
from farm.serve.replica import ModelServer


@dataclass(frozen=True)
class ServeOptions:
    """Where to listen, replicas and their resources, batching and request limits."""

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    max_events: int = 100_000
    max_json_events: int = 1_000
    max_request_bytes: int = 8_000_000
    poll_seconds: float = 5.0
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None


app = FastAPI(
    title="farm serve",
    version=__version__,
    description="On-demand showers, jets and events from registered farm models "
    "(docs/serving.md). Shower energies are in MeV, jet and particle pT in GeV; responses name "
    "the model version that served them.",
)
LIMITS: dict[str, int] = {"max_request_bytes": ServeOptions.max_request_bytes}


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": " ".join(str(message).split())})


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return _fail(400, f"malformed JSON body: {first.get('ctx', {}).get('error', 'invalid')}")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if not where and first.get("type") == "value_error":  # the request's own checks
        return _fail(422, str(first.get("msg", "invalid")).removeprefix("Value error, "))
    if not where:  # not a JSON object: e.g. curl -d without Content-Type: application/json
        return _fail(400, "the body must be a JSON object (Content-Type: application/json)")
    return _fail(422, f"field '{where}': {first.get('msg', 'invalid')}")


@app.exception_handler(HTTPException)
async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    return _fail(exc.status_code, exc.detail)


@app.exception_handler(Exception)
async def _internal(request: Request, exc: Exception) -> JSONResponse:
    return _fail(500, f"internal error ({type(exc).__name__})")


@app.middleware("http")
async def _bounded(request: Request, call_next):
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > LIMITS["max_request_bytes"]:
        return _fail(413, f"request body of {size} bytes exceeds {LIMITS['max_request_bytes']}")
    return await call_next(request)


def _job(body: GenerateRequest, limits: ServeOptions) -> Job | JSONResponse:
    """The request's conditions (energies expanded to one per event), or a 4xx."""
    if body.kind != "showers":
        n = len(body.jets or body.electrons or body.truth)
        if n > limits.max_events:
            return _fail(413, f"events {n} exceeds the limit of {limits.max_events} per request")
        if body.jets:
            conditions = jet_truth(body.jets)
        elif body.electrons:
            conditions = event_electrons(body.electrons, body.truth)
        else:
            conditions = event_truth(body.truth)
        return Job(
            body.kind, conditions, body.sampler, body.nfe, body.seed, body.truncate, body.condition
        )
    events = body.events or len(body.energies)
    if events > limits.max_events:
        return _fail(413, f"events {events} exceeds the limit of {limits.max_events} per request")
    if len(body.energies) not in (1, events):
        return _fail(
            400,
            f"energies has {len(body.energies)} values but events is {events}: give one energy "
            "or one per event",
        )
    e_inc = np.broadcast_to(np.asarray(body.energies, np.float64), (events,)).copy()
    return Job("showers", e_inc, body.sampler, body.nfe, body.seed)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(app)
class Gateway:
    """Routes requests to the model deployments and encodes their results."""

    def __init__(self, names: list[str], handles: list[Any], limits: dict[str, Any]):
        """Model names and their deployment handles; the request limits."""
        self.models = dict(zip(names, handles, strict=True))
        self.limits = ServeOptions(**limits)
        LIMITS["max_request_bytes"] = self.limits.max_request_bytes

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness: the served model names."""
        return {"status": "ok", "models": sorted(self.models)}

    @app.get("/v1/models")
    async def list_models(self) -> dict[str, Any]:
        """Served models: version, aliases, card summary, default sampler, batch sizes seen."""
        return {"models": [await h.info.remote() for h in self.models.values()]}

    @app.post(
        "/v1/models/{name}/generate",
        responses={200: {"content": {"application/json": {}, ARROW_STREAM: {}}}},
    )
    async def generate(self, name: str, body: GenerateRequest, request: Request) -> Response:
        """Showers, point clouds, jets or reco events for the conditions; JSON or Arrow IPC."""
        handle = self.models.get(name)
        if handle is None:
            known = ", ".join(sorted(self.models))
            return _fail(404, f"model {name!r} is not served here (served: {known})")
        job = _job(body, self.limits)
        if isinstance(job, JSONResponse):
            return job
        arrow = ARROW_STREAM in request.headers.get("accept", "")
        if not arrow and len(job) > self.limits.max_json_events:
            return _fail(
                406,
                f"{len(job)} events exceed {self.limits.max_json_events} for JSON; "
                f"ask for Accept: {ARROW_STREAM}",
            )
        result = await handle.generate.remote(job)
        if result.error is not None:
            return _fail(result.status, result.error)
        headers = {"X-Farm-Model-Version": result.header["served_by"]}
        if arrow:
            return Response(arrow_body(result), media_type=ARROW_STREAM, headers=headers)
        return JSONResponse(json_body(result), headers=headers)


def build(refs: list[str], options: ServeOptions):
    """The Serve application: one ModelServer deployment per reference behind the Gateway."""
    from farm.campaign.pool import _actor_env

    env = _actor_env()
    names, bound = [], []
    for ref in refs:
        info = registry.show(ref)  # an unknown model or alias is one line, before Serve starts
        name, version = info["name"], info["version"]
        kind = (info["card"].get("data") or {}).get("kind", "showers")
        if kind not in ("showers", "points", "jets", "events"):
            raise FarmError(
                f"model {name}/{version} generates {kind}; farm serve takes showers, point-cloud "
                "showers, jets and events"
            )
        if name in names:
            raise FarmError(f"model {name} is named twice")
        deployment = serve.deployment(ModelServer, name=f"model-{name}").options(
            num_replicas=options.replicas,
            max_ongoing_requests=max(4 * options.max_batch_size, 64),
            ray_actor_options={
                "num_cpus": options.cpus_per_replica,
                "num_gpus": options.gpus_per_replica,
                "runtime_env": {"env_vars": env},
            },
        )
        names.append(name)
        bound.append(
            deployment.bind(
                ref,
                env,
                device="cuda" if options.gpus_per_replica > 0 else "cpu",
                max_batch_size=options.max_batch_size,
                batch_wait_s=options.batch_wait_ms / 1000,
                poll_s=options.poll_seconds,
                threads=max(int(options.cpus_per_replica), 1),
            )
        )
    gateway = Gateway.options(ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}})
    return gateway.bind(names, bound, asdict(options))


def app_builder(args: dict[str, Any]):
    """Serve's application builder (`import_path: farm.serve.app:app_builder`, RayService).

    args: `models` (NAME@ALIAS references) plus any ServeOptions field, as `farm serve`'s flags;
    an unknown key is one line naming it and the allowed keys.
    """
    fields = {f.name for f in dataclasses.fields(ServeOptions)}
    unknown = sorted(set(args) - fields - {"models"})
    if unknown:
        raise FarmError(f"serve args {unknown}: allowed are models, {', '.join(sorted(fields))}")
    refs = args.get("models")
    if not refs or not isinstance(refs, list):
        raise FarmError("serve args: 'models' must be a non-empty list of NAME@ALIAS")
    return build(list(refs), ServeOptions(**{k: v for k, v in args.items() if k != "models"}))


def start(refs: list[str], options: ServeOptions) -> str:
    """Start Serve on options.host:port (Ray joined or started first) and run the app; its URL."""
    from farm.ray_utils import ensure_ray

    if options.max_batch_size < 1 or options.replicas < 1 or options.max_events < 1:
        raise FarmError("--max-batch-size, --replicas and --max-events must be positive")
    application = build(refs, options)  # unknown models refused before Ray starts
    ensure_ray()
    http = {"host": options.host, "port": options.port}
    if options.ssl_keyfile or options.ssl_certfile:  # HTTPS on Serve's proxy (both needed)
        if not (options.ssl_keyfile and options.ssl_certfile):
            raise FarmError("HTTPS needs both --ssl-keyfile and --ssl-certfile")
        http.update(ssl_keyfile=options.ssl_keyfile, ssl_certfile=options.ssl_certfile)
    serve.start(http_options=http)
    serve.run(application, name="farm", route_prefix="/")
    scheme = "https" if options.ssl_certfile else "http"
    return f"{scheme}://{options.host}:{options.port}"
