"""The policy rule grammar and the Enforcer: defaults, policy files, start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderblock.api.auth import build_authenticator
from cinderblock.api.v3 import snapshots as snapshot_api
from cinderblock.api.v3 import volumes as volume_api
from cinderblock.config import ConfigError, load_settings
from cinderblock.context import RequestContext
from cinderblock.policy import Enforcer, PolicyFileError, PolicySyntaxError, load_enforcer
from cinderblock.policy.defaults import ACTION_NAMES, DEFAULTS
from cinderblock.policy.rules import parse_rule
from cinderblock.services.policy import allowed

MEMBER = {"user_id": "u1", "project_id": "pa", "roles": ["member", "reader"], "is_admin": False}
READER = {"user_id": "u2", "project_id": "pa", "roles": ["reader"], "is_admin": False}
ADMIN = {
    "user_id": "root",
    "project_id": "adm",
    "roles": ["admin", "member"],
    "is_admin": True,
    "is_admin_project": True,
}
OWN = {"project_id": "pa", "user_id": "u1"}
OTHER = {"project_id": "pb", "user_id": "u9"}


def check(rule: str, creds: dict, target: dict | None = None, rules: dict | None = None) -> bool:
    enforcer = Enforcer({"x:probe": rule, **(rules or {})})
    return enforcer.allows("x:probe", target or OWN, creds)


@pytest.mark.parametrize(
    ("rule", "creds", "target", "expected"),
    [
        ("", MEMBER, OWN, True),
        ("@", READER, OTHER, True),
        ("!", ADMIN, OWN, False),
        ("role:member", MEMBER, OWN, True),
        ("role:MEMBER", MEMBER, OWN, True),  # roles compare case-insensitively
        ("role:member", READER, OWN, False),
        ("is_admin:True", ADMIN, OWN, True),
        ("is_admin:True", MEMBER, OWN, False),
        ("project_id:%(project_id)s", MEMBER, OWN, True),
        ("project_id:%(project_id)s", MEMBER, OTHER, False),
        ("user_id:%(user_id)s", MEMBER, OWN, True),
        ("user_id:%(user_id)s", READER, OWN, False),
        ("role:member and project_id:%(project_id)s", MEMBER, OTHER, False),
        ("role:admin or project_id:%(project_id)s", READER, OWN, True),
        ("not role:admin", MEMBER, OWN, True),
        ("not role:admin", ADMIN, OWN, False),
        ("not (role:admin or role:member)", READER, OWN, True),
        ("(role:reader and not role:member) or is_admin:True", READER, OWN, True),
        ("((role:member))", MEMBER, OWN, True),
        (
            "role:member and (project_id:%(project_id)s or user_id:%(user_id)s)",
            MEMBER,
            OTHER,
            False,
        ),
        ("'pa':%(project_id)s", READER, OWN, True),
        ("'pa':%(project_id)s", READER, OTHER, False),
        # A target key that is not there fails the check (it never equals "None").
        ("project_id:%(owner)s", MEMBER, OWN, False),
        ("rule:x:helper", MEMBER, OWN, True),
    ],
)
def test_checks(rule: str, creds: dict, target: dict, expected: bool) -> None:
    assert check(rule, creds, target, rules={"x:helper": "role:member"}) is expected


def test_and_binds_tighter_than_or() -> None:
    # a or (b and c): the reader passes through a
    assert check("role:reader or role:admin and role:nobody", READER)
    # (a or b) and c is what the parentheses say
    assert not check("(role:reader or role:admin) and role:nobody", READER)


def test_list_form_is_or_of_ands() -> None:
    rule = parse_rule([["role:member", "project_id:%(project_id)s"], ["is_admin:True"]])
    assert rule(OWN, MEMBER, lambda *_: False)
    assert not rule(OTHER, MEMBER, lambda *_: False)
    assert rule(OTHER, ADMIN, lambda *_: False)


@pytest.mark.parametrize(
    "bad",
    [
        "role",
        "role:",
        ":member",
        "(role:member",
        "role:member)",
        "role:member and",
        "or role:member",
        "role:member role:admin",
        "not",
        "project_id:%(project_id",
        "some thing:%(x)s",
        "__import__('os'):x",
    ],
)
def test_syntax_errors(bad: str) -> None:
    with pytest.raises(PolicySyntaxError):
        parse_rule(bad)


def test_rules_must_be_strings_or_lists() -> None:
    for bad in (1, True, {"a": 1}, [["role:a", 3]], ["role:a"]):
        with pytest.raises(PolicySyntaxError):
            parse_rule(bad)


def test_undefined_and_circular_rule_references_are_refused() -> None:
    with pytest.raises(PolicyFileError, match="rule:nowhere"):
        Enforcer({"volume:create": "rule:nowhere"})
    with pytest.raises(PolicyFileError, match="refer to each other"):
        Enforcer({"a": "rule:b", "b": "role:x or rule:a"})
    with pytest.raises(PolicyFileError, match="refer to each other"):
        Enforcer({"admin_api": "rule:admin_or_member"})  # admin_or_member uses admin_api


def test_defaults_follow_cinder() -> None:
    enforcer = Enforcer()
    admin_only = [
        "volume_extension:volume_manage",
        "volume_extension:volume_unmanage",
        "volume_extension:list_manageable",
        "snapshot_extension:snapshot_manage",
        "snapshot_extension:list_manageable",
        "volume_extension:volume_admin_actions:reset_status",
        "volume_extension:volume_admin_actions:force_delete",
        "volume_extension:snapshot_admin_actions:reset_status",
        "volume:force_delete",
        "volume_extension:services:index",
        "scheduler_extension:scheduler_stats:get_pools",
        "volume_extension:capabilities",
        "volume_extension:types_manage",
        "volume_extension:types_extra_specs:create",
        "volume_extension:quotas:update",
        "volume:get_all_tenants",
    ]
    for action in admin_only:
        assert not enforcer.allows(action, OWN, MEMBER), action
        assert enforcer.allows(action, OWN, ADMIN), action
    for action in ("volume:create", "volume:delete", "volume:extend", "message:delete"):
        assert enforcer.allows(action, OWN, MEMBER), action
        assert not enforcer.allows(action, OTHER, MEMBER), action
        assert not enforcer.allows(action, OWN, READER), action  # readers do not change
    for action in ("volume:get", "volume:get_all", "message:get", "volume:get_snapshot"):
        assert enforcer.allows(action, OWN, READER), action
        assert not enforcer.allows(action, OTHER, READER), action
        assert enforcer.allows(action, OTHER, ADMIN), action


def test_every_action_the_api_uses_has_a_default() -> None:
    used = set(volume_api.ACTION_POLICY.values()) | set(snapshot_api.ACTION_POLICY.values())
    assert used <= ACTION_NAMES
    # every volume action the API dispatches is authorized as some action
    assert set(volume_api._ACTIONS) == set(volume_api.ACTION_POLICY)
    import re

    import cinderblock

    package = Path(cinderblock.__file__).parent
    source = "".join(p.read_text() for p in package.rglob("*.py") if "policy" not in p.parts)
    asked = set(
        re.findall(r'(?:authorize|allowed|_authorize_on)\(\s*(?:req\.)?ctx,\s*"([^"]+)"', source)
    )
    shaped = set(
        re.findall(r'"((?:volume|snapshot|message|scheduler|limits)[a-z_]*:[a-z_:]+)"', source)
    )
    assert len(asked) > 30
    assert (asked | shaped) - set(DEFAULTS) == set()


def test_policy_file_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "policy.yaml"
    yaml_file.write_text(
        "# members may reset their own volumes\n"
        '"volume_extension:volume_admin_actions:reset_status": "rule:admin_or_member"\n'
        '"volume:create": "rule:admin_api"\n'
    )
    enforcer = load_enforcer(yaml_file)
    assert enforcer.allows("volume_extension:volume_admin_actions:reset_status", OWN, MEMBER)
    assert not enforcer.allows("volume_extension:volume_admin_actions:reset_status", OTHER, MEMBER)
    assert not enforcer.allows("volume:create", OWN, MEMBER)
    assert enforcer.allows("volume:get", OWN, MEMBER)  # the rest keeps its default
    json_file = tmp_path / "policy.json"
    json_file.write_text('{"volume:get": "!"}')
    assert not load_enforcer(json_file).allows("volume:get", OWN, ADMIN)
    assert load_enforcer(tmp_path / "missing.yaml").allows("volume:get", OWN, MEMBER)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_enforcer(empty).allows("volume:create", OWN, MEMBER)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", '"volume:create": [unclosed\n', "not valid YAML"),
        ("bad.json", '{"volume:create": ', "not valid JSON"),
        ("list.yaml", "- volume:create\n", "must map rule names"),
        ("syntax.yaml", '"volume:create": "role:member and"\n', "volume:create"),
        ("number.yaml", '"volume:create": 3\n', "must be a string"),
        ("ref.yaml", '"volume:create": "rule:nope"\n', "rule:nope"),
    ],
)
def test_unusable_policy_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=message):
        load_enforcer(path)


def test_policy_file_from_config_relative_to_its_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "rules.yaml").write_text('"volume:create": "!"\n')
    config = conf_dir / "cinderblock.conf"
    config.write_text("[DEFAULT]\n[oslo_policy]\npolicy_file = rules.yaml\n")
    settings = load_settings(config)
    assert settings.policy_file == str(conf_dir / "rules.yaml")
    authenticator = build_authenticator(settings)
    member = RequestContext("u1", "pa", ("member",))
    assert authenticator.policy is not None
    assert not authenticator.policy.allows("volume:create", OWN, MEMBER)
    # A context the service authenticates is judged by that service's policy.
    ctx = authenticator.authenticate(_Request({"x-auth-token": "u1:pa"}), "req-1")
    assert not allowed(ctx, "volume:create")
    assert allowed(member, "volume:create")  # a bare context: the defaults
    # The default file name is policy.yaml beside the config file; absent: defaults.
    config.write_text("[DEFAULT]\n")
    assert load_settings(config).policy_file == str(conf_dir / "policy.yaml")
    (conf_dir / "rules.yaml").write_text('"volume:create": "rule:missing"\n')
    config.write_text("[DEFAULT]\n[oslo_policy]\npolicy_file = rules.yaml\n")
    with pytest.raises(ConfigError, match="rule:missing"):
        build_authenticator(load_settings(config))


class _Request:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.method = "GET"
        self.url = type("U", (), {"path": "/v3/volumes"})()


def test_docs_list_every_rule_with_its_default() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "policy.md").read_text()
    for name, default in DEFAULTS.items():
        shown = f"`{default}`" if default else '`""`'
        assert f"| `{name}` | {shown}" in doc, name
