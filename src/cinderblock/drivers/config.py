"""Per-backend configuration handed to a driver: one section of cinderblock.conf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


@dataclass(frozen=True)
class BackendConfig:
    """One `[backend]` section. `options` holds every key of the section as text."""

    name: str  # section name; the `backend` part of host@backend
    volume_driver: str
    volume_backend_name: str
    options: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def get_str(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def get_int(self, key: str, default: int) -> int:
        raw = self.options.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ValueError(f"[{self.name}] {key} must be an integer, got {raw!r}") from exc

    def get_float(self, key: str, default: float) -> float:
        raw = self.options.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ValueError(f"[{self.name}] {key} must be a number, got {raw!r}") from exc

    def get_bool(self, key: str, default: bool) -> bool:
        raw = self.options.get(key)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError(f"[{self.name}] {key} must be a boolean, got {raw!r}")
