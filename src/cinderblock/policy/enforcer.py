"""The Enforcer: the default rules, overlaid by the operator's policy file, checked
against a caller's credentials and a target.

A policy file (YAML or JSON, like Cinder's policy.yaml) maps names to rules and only
lists what it changes:

    "volume:create": "rule:admin_api"
    "volume_extension:volume_admin_actions:reset_status": "rule:admin_or_member"

Every rule is parsed when the file is loaded: a file that cannot be read or parsed, a
rule outside the grammar (policy/rules.py), a rule:<name> that names nothing, or rules
that refer to each other in a circle is a PolicyFileError at start-up, never a surprise
at request time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cinderblock.policy.defaults import ACTION_NAMES, DEFAULTS
from cinderblock.policy.rules import Check, Credentials, PolicySyntaxError, Target, parse_rule

LOG = logging.getLogger(__name__)


class PolicyFileError(ValueError):
    """The policy file is unusable; the message names the file and the rule."""


class UnknownAction(LookupError):
    """Code asked about an action that has no rule (a programming error)."""


class Enforcer:
    def __init__(self, overrides: Mapping[str, object] | None = None, source: str = "") -> None:
        self.source = source or "defaults"
        self.overridden = frozenset(overrides or ())
        texts: dict[str, object] = dict(DEFAULTS)
        texts.update(overrides or {})
        self.rules: dict[str, Check] = {}
        for name, text in texts.items():
            if not isinstance(name, str) or not name:
                raise PolicyFileError(f"{self.source}: rule names must be strings, got {name!r}")
            try:
                self.rules[name] = parse_rule(text)
            except PolicySyntaxError as err:
                raise PolicyFileError(f"{self.source}: rule {name!r}: {err}") from err
        self._check_references()
        for name in sorted(self.overridden - set(DEFAULTS)):
            if ":" in name:  # shaped like an action, yet no endpoint asks for it: a typo?
                LOG.warning("%s: %r is not an action this service checks", self.source, name)

    def _check_references(self) -> None:
        for name, check in self.rules.items():
            for ref in check.rule_refs():
                if ref not in self.rules:
                    raise PolicyFileError(
                        f"{self.source}: rule {name!r} refers to rule:{ref}, which is not defined"
                    )
        # Depth-first search for a circle of rule:<name> references.
        state: dict[str, int] = {}  # 1 = being visited, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                circle = " -> ".join([*path[path.index(name) :], name])
                raise PolicyFileError(f"{self.source}: rules refer to each other: {circle}")
            state[name] = 1
            for ref in sorted(self.rules[name].rule_refs()):
                visit(ref, [*path, name])
            state[name] = 2

        for name in self.rules:
            visit(name, [])

    def _lookup(self, name: str, target: Target, creds: Credentials) -> bool:
        return self.rules[name](target, creds, self._lookup)

    def allows(self, action: str, target: Target, creds: Credentials) -> bool:
        if action not in self.rules:
            raise UnknownAction(action)
        return self.rules[action](target, creds, self._lookup)

    def rule_text(self, action: str) -> str:
        return str(self.rules[action])


def _parse_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyFileError(f"cannot read policy file {path}: {err}") from err
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as err:
            raise PolicyFileError(f"policy file {path} is not valid JSON: {err}") from err
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with uvicorn[standard]
        try:
            return json.loads(text)
        except ValueError as err:
            raise PolicyFileError(f"policy file {path}: PyYAML is needed for YAML") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PolicyFileError(f"policy file {path} is not valid YAML: {err}") from err


def load_enforcer(path: str | Path | None) -> Enforcer:
    """The defaults overlaid by the file at path; the defaults alone if there is no file."""
    if path is None:
        return Enforcer()
    path = Path(path)
    if not path.exists():
        LOG.info("no policy file at %s: using the default policy", path)
        return Enforcer()
    data = _parse_file(path)
    if data is None:  # an empty file changes nothing
        data = {}
    if not isinstance(data, dict):
        raise PolicyFileError(f"policy file {path} must map rule names to rules")
    enforcer = Enforcer(data, source=str(path))
    changed = sorted(enforcer.overridden & ACTION_NAMES)
    LOG.info("policy file %s overrides %d rule(s): %s", path, len(data), ", ".join(changed))
    return enforcer
