"""A registered model's card (model.json) as farm reads it: data kind, geometry, training job.

A card comes from the registry, so farm trusts it no more than a file from anyone: `parse_card`
refuses a malformed card with one line naming the version and the field, and refuses any file a
card names (its geometry, its training data) outside the locations farm may read for a card:
the geometries farm ships, the store (FARM_HOME), FARM_GEOMETRY_DIR and the folders listed in
FARM_ALLOWED_LOCATIONS (comma-separated paths or URLs). Files the user names on the command
line or in a job are theirs to choose and are not limited.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from farm import store
from farm.errors import FarmError
from farm.geometry import CELL_GEOMETRIES, KNOWN_GEOMETRIES
from farm.specs import DataSpec

ALLOWED_ENV = "FARM_ALLOWED_LOCATIONS"


class CardData(BaseModel):
    """What the model was trained on (provenance; farm adds split, events, seeds, ...)."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["showers", "jets", "points", "events"] = "showers"
    geometry: str | None = None
    source: str | None = None
    e_inc_range: tuple[float, float] | None = None


class ModelCard(BaseModel):
    """model.json: the architecture (models' config), sizes, data provenance and the job."""

    model_config = ConfigDict(extra="allow")
    config: dict[str, Any]
    dim: int
    cond_dim: int
    data: CardData = Field(default_factory=CardData)
    job: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """'showers', 'jets', 'points' or 'events'."""
        return self.data.kind

    def outside_trained_range(self, lo: float, hi: float) -> bool:
        """Whether incident energies lo..hi MeV leave the trained range (0.1% slack; campaigns)."""
        trained = self.data.e_inc_range
        return bool(trained) and (lo < trained[0] * 0.999 or hi > trained[1] * 1.001)

    def data_spec(self, ref: str) -> Any:
        """The training job's data spec, its files checked (FarmError naming `ref` and the field)."""
        doc = (self.job or {}).get("data")
        if doc is None:
            raise FarmError(f"model {ref} records no training data in its card")
        try:
            spec = TypeAdapter(DataSpec).validate_python(doc)
        except ValidationError as exc:
            raise FarmError(_field_error(ref, exc, prefix="job.data.")) from None
        for key in ("url", "geometry"):
            value = getattr(spec, key, None)
            if isinstance(value, str):
                check_card_location(value, ref, f"job.data.{key}")
        return spec


def allowed_locations() -> list[str]:
    """Where a card may name files: the store, FARM_GEOMETRY_DIR, FARM_ALLOWED_LOCATIONS."""
    roots = [store.home()]
    if os.environ.get("FARM_GEOMETRY_DIR"):
        roots.append(os.environ["FARM_GEOMETRY_DIR"])
    roots += [r.strip() for r in os.environ.get(ALLOWED_ENV, "").split(",") if r.strip()]
    return [_canonical(r) for r in roots]


def _canonical(url: str) -> str:
    """A URL with symlinks and '..' resolved (local), so a prefix test means containment."""
    if store.is_local(url):
        path = url[len("file://") :] if url.startswith("file://") else url
        return str(Path(path).expanduser().resolve())
    return url.rstrip("/")


def is_allowed(url: str, roots: list[str] | None = None) -> bool:
    """Whether a URL lies inside one of the allowed locations."""
    if not store.is_local(url) and any(part in ("..", ".") for part in url.split("/")[3:]):
        return False
    target = _canonical(url)
    return any(
        target == r or target.startswith(r.rstrip("/") + "/") for r in roots or allowed_locations()
    )


def check_card_location(value: str, ref: str, field: str) -> None:
    """FarmError unless a geometry name or file a card names is one farm may read."""
    if field.endswith("geometry") and (value in KNOWN_GEOMETRIES or value in CELL_GEOMETRIES):
        return
    if is_allowed(value):
        return
    raise FarmError(
        f"model {ref}: model card field '{field}' names {value!r}, outside the store and the "
        f"allowed locations; a card may name only the shipped geometries "
        f"({', '.join(KNOWN_GEOMETRIES)}) and files in FARM_HOME, FARM_GEOMETRY_DIR or "
        f"{ALLOWED_ENV} (comma-separated folders)"
    )


def _field_error(ref: str, exc: ValidationError, prefix: str = "") -> str:
    """One line naming the version and the first bad field of a card (never its content)."""
    first = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"])
    return f"model {ref}: malformed model card, field '{field or '(root)'}': {first['msg']}"


def parse_card(doc: Any, ref: str) -> ModelCard:
    """A version's card, checked: one-line FarmError for a malformed card or a forbidden file."""
    if not isinstance(doc, dict) or not doc:
        raise FarmError(f"model {ref}: malformed model card (not a JSON object with fields)")
    try:
        card = ModelCard.model_validate(doc)
    except ValidationError as exc:
        raise FarmError(_field_error(ref, exc)) from None
    if card.data.geometry is not None:
        check_card_location(card.data.geometry, ref, "data.geometry")
    return card
