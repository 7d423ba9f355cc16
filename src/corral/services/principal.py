"""Who is asking."""

from __future__ import annotations

from dataclasses import dataclass

from corral.services.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("only platform administrators may do this", code="admin_required")


# Actor of writes made by Corral itself (scheduler, agents, start-up).
SYSTEM = "system"
