"""Volume type extra specs matched against what a pool reports, with Cinder's operators.

A requirement is a string; when its first word is an operator it is compared with the
reported capability as follows (anything else is plain string equality):

=================  ====================================================================
``<is> True``      the capability is boolean true (``<is> False``: boolean false)
``<in> text``      ``text`` is a substring of the capability, or an item of a list
``<all-in> a b``   every word is a substring of the capability / an item of its list
``<or> a <or> b``  the capability equals one of the alternatives
``== 5``           numeric equality; ``!=``, ``>=``, ``<=`` likewise, and ``= 5`` means
                   "at least 5", as in Cinder
``s== text``       string comparisons: ``s!=``, ``s>=``, ``s<=``, ``s>``, ``s<``
=================  ====================================================================

Keys: ``capabilities:name`` and unscoped ``name`` look up ``name`` in the pool's
capabilities (``capabilities:a:b`` looks up ``b`` inside the dict ``a``); a pool that
does not report the capability fails. Keys with any other scope (``RESKEY:...``,
``provisioning:type``, vendor ``acme:...``) are for other filters or the driver and
are ignored here, as Cinder does.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

# Unscoped keys that are not matched here because a dedicated filter handles them.
HANDLED_ELSEWHERE = frozenset({"volume_backend_name"})
AVAILABILITY_ZONES_KEY = "RESKEY:availability_zones"

_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    "=": operator.ge,
}
_STRING: dict[str, Callable[[str, str], bool]] = {
    "s==": operator.eq,
    "s!=": operator.ne,
    "s>=": operator.ge,
    "s<=": operator.le,
    "s>": operator.gt,
    "s<": operator.lt,
}
_OR_SEPARATOR = re.compile(r"(?:^|\s)<or>(?:\s|$)")


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _text(value: Any) -> str:
    return str(value)


def _same(capability: Any, wanted: str) -> bool:
    """Plain equality: the reported value, as a string, is the wanted string."""
    if isinstance(capability, bool):
        return wanted.strip().lower() == str(capability).lower()
    return _text(capability) == wanted


def _items(capability: Any) -> list[str] | str:
    if isinstance(capability, list | tuple | set | frozenset):
        return [_text(item) for item in capability]
    return _text(capability)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def match(capability: Any, requirement: str) -> bool:
    """Whether a reported capability satisfies one extra spec value."""
    if capability is None:
        return False
    words = requirement.split()
    op = words[0] if words else ""
    rest = requirement.strip()[len(op) :].strip()
    if op == "<or>":
        options = [part.strip() for part in _OR_SEPARATOR.split(requirement)]
        return any(_same(capability, option) for option in options if option)
    if op == "<is>":
        wanted = _as_bool(rest)
        return wanted is not None and _as_bool(capability) is wanted
    if op == "<in>":
        return bool(rest) and rest in _items(capability)
    if op == "<all-in>":
        haystack = _items(capability)
        return len(words) > 1 and all(word in haystack for word in words[1:])
    if op in _NUMERIC:
        have, want = _float(capability), _float(rest)
        return have is not None and want is not None and _NUMERIC[op](have, want)
    if op in _STRING:
        return _STRING[op](_text(capability), rest)
    return _same(capability, requirement)


def _lookup(capabilities: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = capabilities
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def unmet_extra_specs(
    capabilities: Mapping[str, Any], extra_specs: Mapping[str, str | None]
) -> str | None:
    """None when every capability spec is satisfied, else why not (for the logs)."""
    for key, requirement in sorted(extra_specs.items()):
        if requirement is None or key in HANDLED_ELSEWHERE:
            continue
        scope = key.split(":")
        if len(scope) > 1:
            if scope[0] != "capabilities":
                continue
            scope = scope[1:]
        have = _lookup(capabilities, scope)
        name = ":".join(scope)
        if have is None:
            return f"capability {name} not reported (wanted {requirement!r})"
        if not match(have, str(requirement)):
            return f"capability {name}={have!r} does not satisfy {requirement!r}"
    return None


def availability_zones(extra_specs: Mapping[str, str | None]) -> list[str] | None:
    """The zones a volume type is restricted to, or None when it is not restricted."""
    value = extra_specs.get(AVAILABILITY_ZONES_KEY)
    if not value:
        return None
    zones = [zone.strip() for zone in value.split(",") if zone.strip()]
    return zones or None
