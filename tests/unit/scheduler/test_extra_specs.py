"""Volume type extra specs against pool capabilities: Cinder's operators and scopes."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.scheduler.capabilities import availability_zones, match, unmet_extra_specs

OPERATORS: list[tuple[Any, str, bool]] = [
    # <is>
    (True, "<is> True", True),
    (True, "<is> true", True),
    (False, "<is> True", False),
    (False, "<is> False", True),
    ("True", "<is> True", True),
    ("false", "<is> False", True),
    ("yes", "<is> True", False),
    (True, "<is> maybe", False),
    (1, "<is> True", False),
    # <in>
    ("thin,thick", "<in> thick", True),
    ("thin", "<in> thick", False),
    (["iSCSI", "FC"], "<in> FC", True),
    (["iSCSI", "FC"], "<in> F", False),
    ("anything", "<in>", False),
    # <all-in>
    (["a", "b", "c"], "<all-in> a c", True),
    (["a", "b"], "<all-in> a c", False),
    ("compression dedup", "<all-in> dedup compression", True),
    ("compression", "<all-in> dedup compression", False),
    (["a"], "<all-in>", False),
    # <or>
    ("iSCSI", "<or> FC <or> iSCSI", True),
    ("NVMe", "<or> FC <or> iSCSI", False),
    ("a b", "<or> a b <or> c", True),
    (True, "<or> True <or> yes", True),
    # numeric
    (10, "== 10", True),
    ("10.0", "== 10", True),
    (10, "== 11", False),
    (10, "!= 11", True),
    (10, "!= 10", False),
    (10, ">= 10", True),
    (9.5, ">= 10", False),
    (10, "<= 10", True),
    (11, "<= 10", False),
    (12, "= 10", True),  # Cinder: '=' means at least
    (9, "= 10", False),
    ("lots", ">= 10", False),
    (10, ">= lots", False),
    (True, "== 1", True),
    # strings
    ("abc", "s== abc", True),
    ("abc", "s== abd", False),
    ("abc", "s!= abd", True),
    ("abc", "s!= abc", False),
    ("abc", "s>= abc", True),
    ("abc", "s> abb", True),
    ("abc", "s> abc", False),
    ("abc", "s< abd", True),
    ("abd", "s<= abc", False),
    ("10", "s< 9", True),  # string order, not numeric
    # plain values: string equality
    ("iSCSI", "iSCSI", True),
    ("iSCSI", "iscsi", False),
    (True, "True", True),
    (True, "true", True),
    (False, "True", False),
    (5, "5", True),
    ("a b", "a b", True),
    # nothing reported never matches
    (None, "<is> False", False),
    (None, "", False),
]


@pytest.mark.parametrize(("capability", "requirement", "expected"), OPERATORS)
def test_operator(capability: Any, requirement: str, expected: bool) -> None:
    assert match(capability, requirement) is expected


CAPS = {
    "volume_backend_name": "fast",
    "storage_protocol": "iSCSI",
    "multiattach": True,
    "thin_provisioning_support": True,
    "total_capacity_gb": 100,
    "nested": {"level": "gold"},
}


@pytest.mark.parametrize(
    ("specs", "fits"),
    [
        ({}, True),
        ({"multiattach": "<is> True"}, True),
        ({"capabilities:multiattach": "<is> True"}, True),
        ({"capabilities:multiattach": "<is> False"}, False),
        ({"storage_protocol": "<or> FC <or> iSCSI"}, True),
        ({"capabilities:storage_protocol": "FC"}, False),
        ({"capabilities:total_capacity_gb": ">= 50"}, True),
        ({"capabilities:nested:level": "gold"}, True),
        ({"capabilities:nested:level": "silver"}, False),
        ({"capabilities:storage_protocol:deeper": "x"}, False),
        # a capability the pool does not report fails, scoped or not
        ({"replication_enabled": "<is> True"}, False),
        ({"capabilities:replication_enabled": "<is> True"}, False),
        # other scopes are for the driver or other filters
        ({"acme:tier": "platinum"}, True),
        ({"provisioning:type": "thick"}, True),
        ({"RESKEY:availability_zones": "az9"}, True),
        ({"QoS:read_iops": "100"}, True),
        # volume_backend_name has its own filter
        ({"volume_backend_name": "slow"}, True),
        ({"multiattach": "<is> True", "storage_protocol": "FC"}, False),
    ],
)
def test_unmet_extra_specs(specs: dict[str, str], fits: bool) -> None:
    reason = unmet_extra_specs(CAPS, specs)
    assert (reason is None) is fits, reason


def test_reason_names_the_capability() -> None:
    reason = unmet_extra_specs(CAPS, {"capabilities:storage_protocol": "FC"})
    assert reason is not None and "storage_protocol" in reason and "FC" in reason
    missing = unmet_extra_specs(CAPS, {"dedup": "<is> True"})
    assert missing is not None and "dedup" in missing and "not reported" in missing


@pytest.mark.parametrize(
    ("value", "zones"),
    [
        (None, None),
        ("", None),
        (" , ", None),
        ("az1", ["az1"]),
        ("az1, az2 ,az3", ["az1", "az2", "az3"]),
    ],
)
def test_availability_zones(value: str | None, zones: list[str] | None) -> None:
    specs = {} if value is None else {"RESKEY:availability_zones": value}
    assert availability_zones(specs) == zones
