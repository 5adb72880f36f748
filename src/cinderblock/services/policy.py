"""Who may do what. Defaults follow Cinder's: admin-only actions and fields."""

from __future__ import annotations

from cinderblock import exceptions as exc
from cinderblock.context import RequestContext

# Actions only an admin may perform by default (Cinder's rule:admin_api).
ADMIN_ONLY = frozenset(
    {
        "volume_extension:volume_admin_actions:reset_status",
        "volume_extension:volume_admin_actions:force_delete",
        "volume_extension:snapshot_admin_actions:reset_status",
        "volume_extension:snapshot_admin_actions:force_delete",
        "volume:force_delete",
        "volume_extension:types_manage",
        "volume_extension:types_extra_specs:create",
        "volume_extension:types_extra_specs:update",
        "volume_extension:types_extra_specs:delete",
        "volume_extension:volume_manage",
        "volume_extension:volume_unmanage",
        "volume_extension:list_manageable",
        "snapshot_extension:snapshot_manage",
        "snapshot_extension:snapshot_unmanage",
        "snapshot_extension:list_manageable",
        "volume_extension:services:index",
        "volume_extension:services:update",
        "scheduler_extension:scheduler_stats:get_pools",
        "volume_extension:capabilities",
        "volume:get_all_tenants",
        "volume_extension:quotas:update",
        "volume_extension:quotas:delete",
    }
)


def authorize(ctx: RequestContext, action: str) -> None:
    if action in ADMIN_ONLY and not ctx.is_admin:
        raise exc.PolicyNotAuthorized(action=action)


def check_project(ctx: RequestContext, project_id: str | None) -> None:
    """Members act only inside their own project; admins anywhere."""
    if ctx.is_admin or project_id is None:
        return
    if project_id != ctx.project_id:
        raise exc.PolicyNotAuthorized(action="volume:get")
