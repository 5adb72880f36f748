"""Every action the API authorizes, with its default rule (Cinder's policy names and
defaults where Cinder has the action; ours are marked in docs/policy.md).

Targets: an action on one resource is checked against that resource's project_id and
user_id; a create or a list against the caller's own project.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_API = "rule:admin_api"
OWNER = "rule:admin_or_owner"  # reads: an admin, or anyone in the target's project
MEMBER = "rule:admin_or_member"  # changes: an admin, or a member of the target's project
ANYONE = ""


@dataclass(frozen=True)
class Rule:
    name: str
    default: str
    description: str


# Building blocks the actions refer to (rule:<name>); a policy file may redefine them too.
BASE_RULES = (
    Rule("context_is_admin", "role:admin", "Who counts as an administrator."),
    Rule(
        "admin_api",
        "is_admin:True or (role:admin and is_admin_project:True)",
        "Administrator-only operations.",
    ),
    Rule(
        "admin_or_owner",
        "is_admin:True or (role:admin and is_admin_project:True) or project_id:%(project_id)s",
        "An administrator, or anyone in the target's project (reads).",
    ),
    Rule(
        "admin_or_member",
        "rule:admin_api or (role:member and project_id:%(project_id)s)",
        "An administrator, or a member of the target's project (changes).",
    ),
)

_ACTIONS: tuple[tuple[str, str, str], ...] = (
    # volumes
    ("volume:create", MEMBER, "POST /volumes"),
    ("volume:get", OWNER, "GET /volumes/{id}; a volume action's first look"),
    ("volume:get_all", OWNER, "GET /volumes, /volumes/detail, /volumes/summary"),
    ("volume:get_all_tenants", ADMIN_API, "all_tenants=1 on the volume and snapshot lists"),
    ("volume:update", MEMBER, "PUT /volumes/{id}; os-set_bootable"),
    ("volume:delete", MEMBER, "DELETE /volumes/{id}"),
    ("volume:force_delete", ADMIN_API, "DELETE /volumes/{id}?force=true (3.23)"),
    ("volume:extend", MEMBER, "os-extend"),
    ("volume:extend_attached_volume", MEMBER, "os-extend of an in-use volume (3.42)"),
    ("volume:revert_to_snapshot", MEMBER, "revert (3.40)"),
    ("volume:get_volume_metadata", OWNER, "GET /volumes/{id}/metadata[/{key}]"),
    ("volume:create_volume_metadata", MEMBER, "POST /volumes/{id}/metadata"),
    ("volume:update_volume_metadata", MEMBER, "PUT /volumes/{id}/metadata[/{key}]"),
    ("volume:delete_volume_metadata", MEMBER, "DELETE /volumes/{id}/metadata/{key}"),
    # legacy attach actions
    ("volume_extension:volume_actions:reserve", MEMBER, "os-reserve"),
    ("volume_extension:volume_actions:unreserve", MEMBER, "os-unreserve"),
    ("volume_extension:volume_actions:begin_detaching", MEMBER, "os-begin_detaching"),
    ("volume_extension:volume_actions:roll_detaching", MEMBER, "os-roll_detaching"),
    ("volume_extension:volume_actions:attach", MEMBER, "os-attach"),
    ("volume_extension:volume_actions:detach", MEMBER, "os-detach"),
    (
        "volume_extension:volume_actions:initialize_connection",
        MEMBER,
        "os-initialize_connection",
    ),
    ("volume_extension:volume_actions:terminate_connection", MEMBER, "os-terminate_connection"),
    ("volume_extension:volume_actions:update_readonly", MEMBER, "os-update_readonly_flag"),
    # volume admin actions
    ("volume_extension:volume_admin_actions:reset_status", ADMIN_API, "os-reset_status"),
    ("volume_extension:volume_admin_actions:force_delete", ADMIN_API, "os-force_delete"),
    ("volume_extension:volume_admin_actions:migrate_volume", ADMIN_API, "os-migrate_volume"),
    (
        "volume_extension:volume_admin_actions:repair_status",
        ADMIN_API,
        "os-repair_status (ours: the status from the backend's truth)",
    ),
    # snapshots
    ("volume:create_snapshot", MEMBER, "POST /snapshots"),
    ("volume:get_snapshot", OWNER, "GET /snapshots/{id}; a snapshot action's first look"),
    ("volume:get_all_snapshots", OWNER, "GET /snapshots, /snapshots/detail"),
    ("volume:update_snapshot", MEMBER, "PUT /snapshots/{id}"),
    ("volume:delete_snapshot", MEMBER, "DELETE /snapshots/{id}"),
    ("volume:get_snapshot_metadata", OWNER, "GET /snapshots/{id}/metadata[/{key}]"),
    ("volume:update_snapshot_metadata", MEMBER, "POST, PUT /snapshots/{id}/metadata[/{key}]"),
    ("volume:delete_snapshot_metadata", MEMBER, "DELETE /snapshots/{id}/metadata/{key}"),
    ("volume_extension:snapshot_admin_actions:reset_status", ADMIN_API, "snapshot os-reset_status"),
    ("volume_extension:snapshot_admin_actions:force_delete", ADMIN_API, "snapshot os-force_delete"),
    (
        "volume_extension:snapshot_admin_actions:repair_status",
        ADMIN_API,
        "snapshot os-repair_status (ours)",
    ),
    # manage / unmanage
    ("volume_extension:volume_manage", ADMIN_API, "POST /manageable_volumes (/os-volume-manage)"),
    ("volume_extension:volume_unmanage", ADMIN_API, "volume os-unmanage"),
    ("volume_extension:list_manageable", ADMIN_API, "GET /manageable_volumes[/detail]"),
    ("snapshot_extension:snapshot_manage", ADMIN_API, "POST /manageable_snapshots"),
    ("snapshot_extension:snapshot_unmanage", ADMIN_API, "snapshot os-unmanage"),
    ("snapshot_extension:list_manageable", ADMIN_API, "GET /manageable_snapshots[/detail]"),
    # attachments (3.27)
    ("volume:attachment_create", MEMBER, "POST /attachments"),
    ("volume:attachment_update", MEMBER, "PUT /attachments/{id}"),
    ("volume:attachment_delete", MEMBER, "DELETE /attachments/{id}"),
    ("volume:attachment_complete", MEMBER, "POST /attachments/{id}/action os-complete (3.44)"),
    ("volume:attachment_get", OWNER, "GET /attachments/{id} (ours)"),
    ("volume:attachment_get_all", OWNER, "GET /attachments[/detail] (ours)"),
    # types
    ("volume_extension:type_get", ANYONE, "GET /types/{id}"),
    ("volume_extension:type_get_all", ANYONE, "GET /types"),
    ("volume_extension:types_manage", ADMIN_API, "POST /types, PUT and DELETE /types/{id}"),
    ("volume_extension:types_extra_specs:index", ANYONE, "GET /types/{id}/extra_specs"),
    ("volume_extension:types_extra_specs:show", ANYONE, "GET /types/{id}/extra_specs/{key}"),
    ("volume_extension:types_extra_specs:create", ADMIN_API, "POST /types/{id}/extra_specs"),
    ("volume_extension:types_extra_specs:update", ADMIN_API, "PUT /types/{id}/extra_specs/{key}"),
    (
        "volume_extension:types_extra_specs:delete",
        ADMIN_API,
        "DELETE /types/{id}/extra_specs/{key}",
    ),
    # messages (3.3)
    ("message:get_all", OWNER, "GET /messages"),
    ("message:get", OWNER, "GET /messages/{id}"),
    ("message:delete", MEMBER, "DELETE /messages/{id}"),
    # quotas
    ("volume_extension:quotas:show", OWNER, "GET /os-quota-sets/{project}[/defaults]"),
    ("volume_extension:quotas:update", ADMIN_API, "PUT /os-quota-sets/{project}"),
    ("volume_extension:quotas:delete", ADMIN_API, "DELETE /os-quota-sets/{project}"),
    # service administration
    ("volume_extension:services:index", ADMIN_API, "GET /os-services"),
    ("volume_extension:services:update", ADMIN_API, "PUT /os-services/{action}"),
    ("scheduler_extension:scheduler_stats:get_pools", ADMIN_API, "GET /scheduler-stats/get_pools"),
    ("volume_extension:capabilities", ADMIN_API, "GET /capabilities/{host}"),
    # informational
    ("limits_extension:used_limits", OWNER, "GET /limits"),
    ("volume_extension:availability_zone_list", ANYONE, "GET /os-availability-zone"),
    ("volume:get_resource_filters", ANYONE, "GET /resource_filters (3.33; ours)"),
)

ACTIONS = tuple(Rule(name, default, description) for name, default, description in _ACTIONS)
ACTION_NAMES = frozenset(rule.name for rule in ACTIONS)
DEFAULTS: dict[str, str] = {rule.name: rule.default for rule in (*BASE_RULES, *ACTIONS)}
