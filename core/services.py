"""Service discovery through the ``unicomm.services`` entry-point group.

A service package exposes, in its ``__init__``:

- ``setup(app)`` (required): mounts routes, console pages, background tasks, bus
  subscriptions;
- ``add_cli(subparsers)`` (optional): its ``unicomm`` sub-commands;
- ``seed_demo(ctx)`` (optional, async): its part of ``unicomm demo``;
- a ``migrations/`` folder (optional): its alembic branch;
- a ``models`` module (optional): its tables;
- ``SETUP_ORDER`` (optional int, default 100): shared layers such as signaling
  set up before the services that mount on them.

Discovering instead of importing keeps ``core`` free of service imports.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

GROUP = "unicomm.services"


@dataclass(frozen=True)
class ServicePlugin:
    name: str
    module: ModuleType

    @property
    def migrations_dir(self) -> Path | None:
        folder = Path(self.module.__file__ or "").parent / "migrations"
        return folder if folder.is_dir() else None

    def load_models(self) -> None:
        try:
            importlib.import_module(f"{self.module.__name__}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"{self.module.__name__}.models":
                raise

    def hook(self, name: str) -> Any | None:
        return getattr(self.module, name, None)


@cache
def discover_services() -> tuple[ServicePlugin, ...]:
    found: list[ServicePlugin] = []
    for entry in entry_points(group=GROUP):
        module = importlib.import_module(entry.value)
        if not callable(getattr(module, "setup", None)):
            raise RuntimeError(f"service {entry.name} ({entry.value}) has no setup(app)")
        found.append(ServicePlugin(entry.name, module))
    found.sort(key=lambda plugin: (getattr(plugin.module, "SETUP_ORDER", 100), plugin.name))
    return tuple(found)
