"""Authorize an API call: the caller's context against a named action's rule.

The rules live in cinderblock/policy (Cinder's defaults, overridable by the operator's
policy file). The context names the Enforcer of the service that authenticated it
(`ctx.policy`, set by api/auth.py); a context without one (the service's own work, tests)
is judged by the defaults.

Policy decides what a caller may do to a target it can see; which targets it can see is
decided below, at the data layer: a non-admin's lookups and lists are always limited to
its own project, whatever a policy file says.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext
from cinderblock.policy import Enforcer


@cache
def default_enforcer() -> Enforcer:
    return Enforcer()


def enforcer_of(ctx: RequestContext) -> Enforcer:
    return getattr(ctx, "policy", None) or default_enforcer()


def credentials(ctx: RequestContext) -> dict[str, Any]:
    return {
        "user_id": ctx.user_id,
        "project_id": ctx.project_id,
        "roles": list(ctx.roles),
        "is_admin": ctx.is_admin,
        # No separate admin project is configured: an admin's project is an admin project.
        "is_admin_project": True,
    }


def _target(ctx: RequestContext, target: object) -> Mapping[str, Any]:
    """A dict, or an object with project_id/user_id (a database row); None: the caller's
    own project (creates and lists)."""
    if target is None:
        return {"project_id": ctx.project_id, "user_id": ctx.user_id}
    if isinstance(target, Mapping):
        return target
    return {
        "project_id": getattr(target, "project_id", None),
        "user_id": getattr(target, "user_id", None),
    }


def allowed(ctx: RequestContext, action: str, target: object = None) -> bool:
    return enforcer_of(ctx).allows(action, _target(ctx, target), credentials(ctx))


def authorize(ctx: RequestContext, action: str, target: object = None) -> None:
    """403 "Policy doesn't allow <action> to be performed." unless the rule allows it."""
    if not allowed(ctx, action, target):
        raise exc.PolicyNotAuthorized(action=action)
