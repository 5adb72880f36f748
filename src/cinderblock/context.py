"""Who is asking, on behalf of which project, and under which request id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True)
class RequestContext:
    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...] = ()
    is_admin: bool = False
    request_id: str = field(default_factory=new_request_id)
    global_request_id: str | None = None

    @classmethod
    def admin(cls) -> RequestContext:
        """Context for work the service does on its own (recovery, periodic tasks)."""
        return cls(user_id=None, project_id=None, roles=("admin",), is_admin=True)

    def to_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": list(self.roles),
            "is_admin": self.is_admin,
            "request_id": self.request_id,
            "global_request_id": self.global_request_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RequestContext:
        return cls(
            user_id=data.get("user_id"),  # type: ignore[arg-type]
            project_id=data.get("project_id"),  # type: ignore[arg-type]
            roles=tuple(data.get("roles") or ()),  # type: ignore[arg-type]
            is_admin=bool(data.get("is_admin")),
            request_id=str(data.get("request_id") or new_request_id()),
            global_request_id=data.get("global_request_id"),  # type: ignore[arg-type]
        )
