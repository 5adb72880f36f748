"""Policy rule expressions: parsed once into a small tree, evaluated per request.

The grammar is the common part of oslo.policy's:

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | check
    check  := "@" | "!" | kind ":" match

An empty rule ("" or []) allows anyone, like "@"; "!" allows no one. Checks:

    rule:<name>             the named rule (or action) of the same policy
    role:<name>             the caller has that role (case-insensitive)
    <credential>:<match>    the caller's credential (is_admin, project_id, user_id,
                            is_admin_project...) equals match; match may be a literal
                            (True, False, abc) or %(key)s, the target's value for key
    '<literal>':<match>     the literal equals match (e.g. 'admin':%(owner)s)

Parsing is done by hand (nothing is eval'ed); any other text is a PolicySyntaxError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Credentials = Mapping[str, Any]
Target = Mapping[str, Any]
# Resolves rule:<name> while evaluating (the Enforcer's own lookup).
RuleLookup = Callable[[str, Target, Credentials], bool]


class PolicySyntaxError(ValueError):
    """A rule that is not in the grammar above; the message says which token and where."""


class Check:
    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        raise NotImplementedError

    def rule_refs(self) -> set[str]:
        """Names this expression refers to through rule:<name>."""
        return set()


@dataclass(frozen=True)
class Always(Check):
    value: bool

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        return self.value

    def __str__(self) -> str:
        return "@" if self.value else "!"


@dataclass(frozen=True)
class Not(Check):
    inner: Check

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        return not self.inner(target, creds, lookup)

    def rule_refs(self) -> set[str]:
        return self.inner.rule_refs()

    def __str__(self) -> str:
        return f"not {self.inner}"


@dataclass(frozen=True)
class All(Check):
    parts: tuple[Check, ...]

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        return all(part(target, creds, lookup) for part in self.parts)

    def rule_refs(self) -> set[str]:
        return set().union(*(p.rule_refs() for p in self.parts))

    def __str__(self) -> str:
        return "(" + " and ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class Any_(Check):
    parts: tuple[Check, ...]

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        return any(part(target, creds, lookup) for part in self.parts)

    def rule_refs(self) -> set[str]:
        return set().union(*(p.rule_refs() for p in self.parts))

    def __str__(self) -> str:
        return "(" + " or ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class RuleRef(Check):
    name: str

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        return lookup(self.name, target, creds)

    def rule_refs(self) -> set[str]:
        return {self.name}

    def __str__(self) -> str:
        return f"rule:{self.name}"


_TARGET_REF = re.compile(r"%\(([^()]+)\)s")


def _substitute(match: str, target: Target) -> str | None:
    """match with every %(key)s replaced by the target's value; None if a key is missing
    (a check against something the target does not have fails, it does not match None)."""
    missing = False

    def value(found: re.Match[str]) -> str:
        nonlocal missing
        if found.group(1) not in target or target[found.group(1)] is None:
            missing = True
            return ""
        return str(target[found.group(1)])

    out = _TARGET_REF.sub(value, match)
    return None if missing else out


@dataclass(frozen=True)
class RoleCheck(Check):
    role: str

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        wanted = _substitute(self.role, target)
        roles = creds.get("roles") or ()
        return wanted is not None and wanted.lower() in {str(r).lower() for r in roles}

    def __str__(self) -> str:
        return f"role:{self.role}"


@dataclass(frozen=True)
class FieldCheck(Check):
    """<credential>:<match> or '<literal>':<match>."""

    field: str
    match: str
    literal: bool = False

    def __call__(self, target: Target, creds: Credentials, lookup: RuleLookup) -> bool:
        wanted = _substitute(self.match, target)
        if wanted is None:
            return False
        if self.literal:
            return self.field == wanted
        if self.field not in creds or creds[self.field] is None:
            return False
        have = creds[self.field]
        if isinstance(have, list | tuple | set | frozenset):
            return wanted in {str(v) for v in have}
        return str(have) == wanted

    def __str__(self) -> str:
        field = f"'{self.field}'" if self.literal else self.field
        return f"{field}:{self.match}"


_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _tokenize(text: str) -> list[str]:
    """Words split on white space, with parentheses as their own tokens."""
    tokens: list[str] = []
    for word in text.split():
        while word.startswith("("):
            tokens.append("(")
            word = word[1:]
        closing = 0
        while word.endswith(")"):  # (a %(key)s reference ends in "s", never ")")
            word = word[:-1]
            closing += 1
        if word:
            tokens.append(word)
        tokens.extend(")" * closing)
    return tokens


def _check(token: str, rule_text: str) -> Check:
    if token == "@":
        return Always(True)
    if token == "!":
        return Always(False)
    kind, sep, match = token.partition(":")
    if not sep or not kind or not match:
        raise PolicySyntaxError(f"{token!r} in {rule_text!r} is not a check (kind:match, @ or !)")
    if kind == "rule":
        if not _NAME.match(match) and ":" not in match:
            raise PolicySyntaxError(f"bad rule name {match!r} in {rule_text!r}")
        return RuleRef(match)
    if kind == "role":
        return RoleCheck(match)
    if len(kind) >= 2 and kind[0] == kind[-1] and kind[0] in "'\"":
        return FieldCheck(kind[1:-1], match, literal=True)
    if not _NAME.match(kind):
        raise PolicySyntaxError(f"bad credential name {kind!r} in {rule_text!r}")
    if "%(" in match and not _TARGET_REF.search(match):
        raise PolicySyntaxError(f"bad target reference {match!r} in {rule_text!r}")
    return FieldCheck(kind, match)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise PolicySyntaxError(f"{self.text!r} ends too early")
        self.pos += 1
        return token

    def parse(self) -> Check:
        if not self.tokens:
            return Always(True)
        check = self.expr()
        if self.peek() is not None:
            raise PolicySyntaxError(f"unexpected {self.peek()!r} in {self.text!r}")
        return check

    def expr(self) -> Check:
        parts = [self.term()]
        while self.peek() == "or":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def term(self) -> Check:
        parts = [self.factor()]
        while self.peek() == "and":
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def factor(self) -> Check:
        token = self.take()
        if token == "not":
            return Not(self.factor())
        if token == "(":
            inner = self.expr()
            if self.take() != ")":
                raise PolicySyntaxError(f"unbalanced parentheses in {self.text!r}")
            return inner
        if token in (")", "and", "or"):
            raise PolicySyntaxError(f"unexpected {token!r} in {self.text!r}")
        return _check(token, self.text)


def parse_rule(rule: object) -> Check:
    """A rule from a policy file or the defaults: a string in the grammar above. (The old
    list-of-lists form is accepted too: [[a, b], [c]] means (a and b) or c.)"""
    if isinstance(rule, str):
        return _Parser(rule).parse()
    if isinstance(rule, list):
        if not rule:
            return Always(True)
        alternatives = []
        for alternative in rule:
            if not isinstance(alternative, list) or not all(
                isinstance(c, str) for c in alternative
            ):
                raise PolicySyntaxError(f"{rule!r}: the list form is a list of lists of checks")
            alternatives.append(All(tuple(_check(c, str(rule)) for c in alternative)))
        return alternatives[0] if len(alternatives) == 1 else Any_(tuple(alternatives))
    raise PolicySyntaxError(f"a rule must be a string, got {type(rule).__name__}: {rule!r}")
