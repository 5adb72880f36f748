"""Parsing tgtadm's text output (captured from tgt 1.0.85 on Debian 12)."""

from __future__ import annotations

from cinderblock.targets.tgtshow import (
    is_address_rule,
    join_portal,
    parse_portals,
    parse_targets,
    portal_serves,
    split_portal,
)

LUN0 = """\
        LUN: 0
            Type: controller
            SCSI ID: IET     00030000
            SCSI SN: beaf30
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags:
"""

SHOW = (
    """\
Target 3: iqn.2010-10.org.openstack:volume-bbb
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.x:good alias: none
            Connection: 0
                IP Address: 127.0.0.1
        I_T nexus: 4
            Initiator: iqn.x:other alias: host2
            Connection: 0
                IP Address: 10.0.0.9
            Connection: 1
                IP Address: 10.0.1.9
    LUN information:
"""
    + LUN0
    + """\
        LUN: 1
            Type: disk
            SCSI ID: IET     00030001
            SCSI SN: beaf31
            Size: 67 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: Yes
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /srv/vols/volume-bbb@snapshot-x y
            Backing store flags:
    Account information:
        u3
        o3 (outgoing)
    ACL information:
        10.1.1.1
        192.168.0.0/24
        ALL
        iqn.x:good
Target 12: iqn.2010-10.org.openstack:volume-ccc
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
"""
    + LUN0
    + """\
    Account information:
    ACL information:
"""
).replace("flags:\n", "flags: \n")  # tgtadm really prints that trailing space


def test_targets_luns_accounts_acls_and_sessions() -> None:
    targets = parse_targets(SHOW)
    assert list(targets) == [
        "iqn.2010-10.org.openstack:volume-bbb",
        "iqn.2010-10.org.openstack:volume-ccc",
    ]
    bbb = targets["iqn.2010-10.org.openstack:volume-bbb"]
    assert bbb.tid == 3
    assert bbb.luns[0].path is None and not bbb.luns[0].readonly
    assert bbb.luns[1].path == "/srv/vols/volume-bbb@snapshot-x y"
    assert bbb.luns[1].readonly
    assert bbb.luns[0].size_mb == 0 and bbb.luns[1].size_mb == 67
    assert bbb.accounts == ["u3"]
    assert bbb.outgoing_accounts == ["o3"]
    assert bbb.acl_addresses == ["10.1.1.1", "192.168.0.0/24", "ALL"]
    assert bbb.acl_names == ["iqn.x:good"]
    assert [(s.sid, s.initiator, s.connections) for s in bbb.sessions] == [
        (1, "iqn.x:good", {0: "127.0.0.1"}),
        (4, "iqn.x:other", {0: "10.0.0.9", 1: "10.0.1.9"}),
    ]
    ccc = targets["iqn.2010-10.org.openstack:volume-ccc"]
    assert ccc.tid == 12 and list(ccc.luns) == [0]
    assert ccc.accounts == [] and ccc.acl_names == [] and ccc.sessions == []


def test_empty_output_means_no_targets() -> None:
    assert parse_targets("") == {}


def test_address_rules_versus_initiator_names() -> None:
    assert is_address_rule("127.0.0.1")
    assert is_address_rule("ALL")
    assert is_address_rule("10.0.0.0/8")
    assert is_address_rule("[fe80::1]")
    assert not is_address_rule("iqn.1994-05.com.redhat:abc")
    assert not is_address_rule("eui.02004567A425678D")


def test_portals() -> None:
    text = "Portal: 127.0.0.1:3260,1\nPortal: [::]:3260,1\nPortal: 0.0.0.0:3261,1\n"
    assert parse_portals(text) == ["127.0.0.1:3260", "[::]:3260", "0.0.0.0:3261"]
    assert split_portal("[fe80::1]:3260") == ("fe80::1", 3260)
    assert join_portal("fe80::1", 3260) == "[fe80::1]:3260"
    assert join_portal("10.0.0.1", 3260) == "10.0.0.1:3260"


def test_which_listening_portal_serves_which_address() -> None:
    assert portal_serves("127.0.0.1:3260", "127.0.0.1:3260")
    assert not portal_serves("127.0.0.1:3260", "127.0.0.2:3260")
    assert not portal_serves("127.0.0.1:3260", "127.0.0.1:3261")
    assert portal_serves("0.0.0.0:3260", "10.1.2.3:3260")
    assert not portal_serves("0.0.0.0:3260", "[fe80::1]:3260")
    assert portal_serves("[::]:3260", "10.1.2.3:3260")
    assert portal_serves("[::]:3260", "[fe80::1]:3260")
