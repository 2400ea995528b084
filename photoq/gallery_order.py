"""How an album's photos are ordered for people: by date taken (newest first), by upload, or by name; and the
opaque cursors that page through an order.

The date taken is the EXIF capture time (UTC when the camera wrote its offset, else the camera's own clock, read as
UTC: good enough to order and to group by day), and the upload time for a photo without one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class GalleryOrder(StrEnum):
    TAKEN = "taken"
    UPLOADED = "uploaded"
    NAME = "name"


DEFAULT_ORDER = GalleryOrder.TAKEN
ORDER_LABELS = {GalleryOrder.TAKEN: "Date taken", GalleryOrder.UPLOADED: "Upload order", GalleryOrder.NAME: "Name"}


def parse_order(raw: str | None) -> GalleryOrder | None:
    """None when `raw` names no order."""
    try:
        return GalleryOrder(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Cursor:
    """The position after the last photo of a page: its sort key and id."""

    key: float | int | str
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.key, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str, order: GalleryOrder) -> Cursor | None:
        """None for anything that is not a cursor of this order."""
        try:
            key, photo_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, TypeError):
            return None
        if isinstance(photo_id, bool) or not isinstance(photo_id, int) or not 0 <= photo_id < 2**63:
            return None
        wanted = str if order is GalleryOrder.NAME else (int, float)
        if isinstance(key, bool) or not isinstance(key, wanted):
            return None
        return cls(key, photo_id)


def day_of(sort_key: float) -> str:
    """The calendar day a photo belongs to in the timeline (ISO date)."""
    return datetime.fromtimestamp(sort_key, UTC).date().isoformat()
