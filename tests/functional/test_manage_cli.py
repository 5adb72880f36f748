"""`cinderblock manage` adopts existing files through the real API, and resumes."""

from __future__ import annotations

import os
import uuid

import pytest

from cinderblock.cli.main import main
from conftest import Api, RunningService

GiB = 1024**3


def _run(cinder: RunningService, api: Api, *args: str) -> int:
    return main(["manage", "--endpoint", cinder.endpoint, "--project", api.project, *args])


def _foreign(cinder: RunningService, name: str, size: int, data: bytes) -> None:
    path = cinder.volumes_dir / name
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(data)


def test_adopt_shows_plan_adopts_and_resumes(
    cinder: RunningService, api: Api, capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(4)]
    for i, name in enumerate(names):
        _foreign(cinder, name, GiB + 1 + i, f"payload {i}".encode())
    host = "testhost@files"

    assert _run(cinder, api, "list", "--host", host) == 0
    listing = capsys.readouterr().out
    for name in names:
        assert name in listing

    # Dry run: the plan, nothing adopted.
    assert _run(cinder, api, "adopt", "--host", host, "--pattern", f"{prefix}-*", "--dry-run") == 0
    plan = capsys.readouterr().out
    assert f"adopt {len(names)} object(s)" in plan
    assert all((cinder.volumes_dir / n).exists() for n in names)

    # A first run adopts only the two named in a file (a run cut short, say).
    chosen = tmp_path / "first.txt"  # type: ignore[operator]
    chosen.write_text("\n".join(names[:2]) + "\n")
    assert _run(cinder, api, "adopt", "--host", host, "--from-file", str(chosen), "--yes") == 0
    first = capsys.readouterr().out
    assert "2 adopted, 0 failed" in first

    # Re-running on the whole pattern carries on with the two that are left.
    assert _run(cinder, api, "adopt", "--host", host, "--pattern", f"{prefix}-*", "--yes") == 0
    second = capsys.readouterr().out
    assert "adopt 2 object(s)" in second
    assert "2 adopted, 0 failed" in second

    volumes = api.get("/volumes/detail").json()["volumes"]
    adopted = {v["name"]: v for v in volumes if v["name"] and v["name"].startswith(prefix)}
    assert sorted(adopted) == names
    for i, name in enumerate(names):
        volume = adopted[name]
        assert volume["status"] == "available"
        assert volume["size"] == 2  # 1 GiB + a few bytes rounds up to 2 GiB
        path = cinder.volumes_dir / f"volume-{volume['id']}"
        with open(path, "rb") as f:
            assert f.read(9) == f"payload {i}".encode()
        assert not (cinder.volumes_dir / name).exists()

    # Nothing left to do: a third run adopts nothing.
    assert _run(cinder, api, "adopt", "--host", host, "--pattern", f"{prefix}-*", "--yes") == 0
    assert "adopt 0 object(s)" in capsys.readouterr().out


def test_adopt_reports_refusals(
    cinder: RunningService, api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cli-bad-{uuid.uuid4().hex[:6]}"
    _foreign(cinder, name, GiB, b"x")
    code = _run(cinder, api, "adopt", "--host", "nosuchhost@files", "--pattern", name, "--yes")
    assert code == 1
    assert "404" in capsys.readouterr().err
    assert (cinder.volumes_dir / name).exists()
