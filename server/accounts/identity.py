"""Who is asking: the one value every page and API read is scoped by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    clinician_id: int
    email: str
    is_admin: bool
