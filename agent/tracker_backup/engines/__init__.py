"""THE registry of engines, in backup order: sqlite, mysql, files.

Every place that needs "each kind" asks here (config parsing, the run, verify,
restore, drill, the generator, the CLI's engine commands); nothing else lists
the kinds. `files` goes last: it asks `owned_paths` which live paths the other
engines copy themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracker_backup.engines.contract import Engine
from tracker_backup.engines.files.engine import FilesEngine
from tracker_backup.engines.mysql.engine import MysqlEngine
from tracker_backup.engines.sqlite.engine import SqliteEngine

if TYPE_CHECKING:
    from tracker_backup.config import Config

ENGINES: tuple[Engine, ...] = (SqliteEngine(), MysqlEngine(), FilesEngine())


def kinds() -> tuple[str, ...]:
    """Every engine's kind, in backup order."""
    return tuple(e.kind for e in ENGINES)


def get(kind: str) -> Engine | None:
    """The engine of one kind (None: unknown, e.g. a manifest from a newer agent)."""
    for engine in ENGINES:
        if engine.kind == kind:
            return engine
    return None


def configured(config: Config) -> list[Engine]:
    """The engines whose section the configuration has, in backup order."""
    return [e for e in ENGINES if config.section(e.kind) is not None]


def owned_paths(config: Config) -> dict[str, str]:
    """Live paths that configured engines copy themselves (path → why), for `files`."""
    owned: dict[str, str] = {}
    for engine in configured(config):
        owned.update(engine.owned_paths(config))
    return owned


def raw_copy_hazard(path: Path, is_dir: bool) -> str | None:
    """The first engine's reason not to copy `path` as a raw file, if any."""
    for engine in ENGINES:
        reason = engine.raw_copy_hazard(path, is_dir)
        if reason:
            return reason
    return None


__all__ = ["ENGINES", "Engine", "configured", "get", "kinds", "owned_paths", "raw_copy_hazard"]
