"""The pydantic base class shared by every wire type.

Requests and responses of the hosted service gain fields over time; a model that rejected
unknown fields would break whenever the other side is newer, so extra fields are ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base of all wire types: unknown fields ignored, validated on assignment."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True, populate_by_name=True)

    def to_wire(self) -> dict[str, object]:
        """The JSON-ready dict the SDK sends: ``None`` fields dropped, defaults kept."""
        return self.model_dump(mode="json", exclude_none=True)
