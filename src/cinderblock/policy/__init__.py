"""Who may do what: named actions, Cinder's default rules, an operator's policy file.

See docs/policy.md for every action and its default; services/policy.py is what the
API calls (`authorize(ctx, action, target)`).
"""

from cinderblock.policy.enforcer import Enforcer, PolicyFileError, UnknownAction, load_enforcer
from cinderblock.policy.rules import PolicySyntaxError, parse_rule

__all__ = [
    "Enforcer",
    "PolicyFileError",
    "PolicySyntaxError",
    "UnknownAction",
    "load_enforcer",
    "parse_rule",
]
