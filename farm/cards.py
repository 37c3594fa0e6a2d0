"""A registered model's card (model.json) as farm reads it: data kind, geometry, training job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from farm.errors import FarmError
from farm.specs import DataSpec


class CardData(BaseModel):
    """What the model was trained on (provenance; farm adds split, events, seeds, ...)."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["showers", "jets"] = "showers"
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
        """'showers' or 'jets'."""
        return self.data.kind

    def data_spec(self, ref: str) -> Any:
        """The training job's data spec (FarmError naming `ref` if the card records none)."""
        doc = (self.job or {}).get("data")
        if doc is None:
            raise FarmError(f"model {ref} records no training data in its card")
        return TypeAdapter(DataSpec).validate_python(doc)
