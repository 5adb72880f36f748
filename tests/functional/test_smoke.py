"""Basic lifecycle through the real HTTP server: create, snapshot, clone, extend, delete."""

from __future__ import annotations

from conftest import Api, RunningService


def test_volume_lifecycle_on_file_backend(api: Api, cinder: RunningService) -> None:
    resp = api.post(
        "/types",
        {
            "volume_type": {
                "name": f"files-{api.project[:8]}",
                "extra_specs": {"volume_backend_name": "files"},
            }
        },
    )
    assert resp.status_code == 200, resp.text
    type_name = resp.json()["volume_type"]["name"]
    volume = api.create_volume(size=1, volume_type=type_name, name="v1")
    assert volume["os-vol-host-attr:host"] == "testhost@files#files"
    path = cinder.volumes_dir / f"volume-{volume['id']}"
    assert path.stat().st_size == 1024**3
    with open(path, "r+b") as f:
        f.write(b"hello world")
    snap = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"], "name": "s1"}})
    assert snap.status_code == 202, snap.text
    snap_id = snap.json()["snapshot"]["id"]
    api.wait_snapshot(snap_id)
    with open(path, "r+b") as f:
        f.write(b"HELLO")
    clone = api.create_volume(snapshot_id=snap_id, size=2)
    clone_path = cinder.volumes_dir / f"volume-{clone['id']}"
    assert clone_path.stat().st_size == 2 * 1024**3
    with open(clone_path, "rb") as f:
        assert f.read(11) == b"hello world"
    resp = api.post(f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 3}})
    assert resp.status_code == 202, resp.text
    api.wait_volume(volume["id"])
    assert api.get(f"/volumes/{volume['id']}").json()["volume"]["size"] == 3
    assert path.stat().st_size == 3 * 1024**3
    with open(path, "rb") as f:
        assert f.read(11) == b"HELLO world"
    resp = api.delete(f"/volumes/{volume['id']}")
    assert resp.status_code == 400
    assert "have snapshots" in resp.json()["badRequest"]["message"]
    resp = api.delete(f"/volumes/{volume['id']}?cascade=true")
    assert resp.status_code == 202
    api.wait_gone(f"/volumes/{volume['id']}")
    assert not path.exists()
    api.delete(f"/volumes/{clone['id']}")
    api.wait_gone(f"/volumes/{clone['id']}")
    assert not clone_path.exists()
