"""[sqlite]: the tracker's SQLite database (typed section and its parser)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker_backup.config import Section

# The Torrust tracker's own tables; a copy without them is not a tracker backup.
TRACKER_TABLES = ("torrents", "keys", "whitelist")


@dataclass(frozen=True)
class SqliteConfig:
    """[sqlite]: the tracker's SQLite database."""

    database: Path
    max_lock: float = 2.0
    busy_timeout: float = 5.0
    stop_command: tuple[str, ...] = ()
    start_command: tuple[str, ...] = ()
    required_tables: tuple[str, ...] = TRACKER_TABLES
    # Continuous archiving (tracker-backup-archive.service, docs/continuous.md).
    continuous: bool = False
    # How a run checks a page snapshot it built from the archive (layout = pages):
    # pages = its new objects and every page digest (no staging, cost of the changes);
    # database = the database reassembled into staging and PRAGMA-checked ([backup] verify).
    archive_check: str = "pages"

    @property
    def has_maintenance_window(self) -> bool:
        """True when both stop_command and start_command are configured."""
        return bool(self.stop_command and self.start_command)


def parse_section(s: Section) -> SqliteConfig:
    """The section, typed and validated (ConfigError names file, key and expectation)."""
    database = s.path("database")
    assert database is not None
    cfg = SqliteConfig(
        database=database,
        max_lock=s.duration("max_lock", 2.0, 0.0, 3600.0),
        busy_timeout=s.duration("busy_timeout", 5.0, 0.0, 3600.0),
        stop_command=s.command("stop_command"),
        start_command=s.command("start_command"),
        required_tables=s.words("required_tables", TRACKER_TABLES),
        continuous=s.boolean("continuous", False),
        archive_check=s.choice("archive_check", "pages", ("pages", "database")),
    )
    if bool(cfg.stop_command) != bool(cfg.start_command):
        key = "start_command" if cfg.stop_command else "stop_command"
        raise s.error(key, "", "both stop_command and start_command, or neither")
    s.finish()
    return cfg
