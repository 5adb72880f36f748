"""Values in cinder.conf-style files: quotes around a value are not part of it."""

from __future__ import annotations

from pathlib import Path

from cinderblock.config import load_settings
from cinderblock.scheduler.evaluator import evaluate, truth


def test_quoted_values_are_unquoted(tmp_path: Path) -> None:
    config = tmp_path / "cinderblock.conf"
    config.write_text(
        """[DEFAULT]
enabled_backends = b1
host = "quoted-host"

[b1]
volume_driver = memory
filter_function = "volume.size < 5"
goodness_function = 'capabilities.free_capacity_gb / 10'
description = "an inner "quote" stays"
lone = "
"""
    )
    settings = load_settings(str(config))
    assert settings.host == "quoted-host"
    (backend,) = settings.backends
    assert backend.get("filter_function") == "volume.size < 5"
    assert backend.get("goodness_function") == "capabilities.free_capacity_gb / 10"
    assert backend.get("description") == 'an inner "quote" stays'
    assert backend.get("lone") == '"'
    # The unquoted text is an expression: it can be false.
    assert not truth(evaluate(backend.get("filter_function") or "", {"volume": {"size": 10}}))
