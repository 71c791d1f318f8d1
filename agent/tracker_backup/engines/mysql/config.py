"""[mysql]: a MySQL/MariaDB database (typed section and its parser)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tracker_backup.config import Section


@dataclass(frozen=True)
class MysqlConfig:
    """[mysql]: a MySQL/MariaDB database dumped hot with mysqldump."""

    database: str
    socket: Path | None = None
    host: str | None = None
    port: int = 3306
    user: str | None = None
    password_file: Path | None = None
    exec_prefix: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    verify: str = "dump"  # dump | restore
    continuous: bool = False  # stream the binlog into <path>/archive/mysql (tracker-backup archive)


def parse_section(s: Section) -> MysqlConfig:
    """The section, typed and validated (ConfigError names file, key and expectation)."""
    cfg = MysqlConfig(
        database=s.identifier("database"),  # type: ignore[arg-type]
        socket=s.path("socket", None),
        host=s.string("host", None),
        port=s.integer("port", 3306, 1, 65535),
        user=s.string("user", None),
        password_file=s.path("password_file", None),
        exec_prefix=s.command("exec_prefix"),
        tables=s.words("tables"),
        exclude_tables=s.words("exclude_tables"),
        verify=s.choice("verify", "dump", ("dump", "restore")),
        continuous=s.boolean("continuous", False),
    )
    if cfg.socket and cfg.host:
        raise s.error("host", cfg.host, "either socket or host, not both")
    if cfg.tables and cfg.exclude_tables:
        raise s.error("exclude_tables", " ".join(cfg.exclude_tables), "tables or exclude_tables, not both")
    for key, names in (("tables", cfg.tables), ("exclude_tables", cfg.exclude_tables)):
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9_$]{1,64}", name):
                raise s.error(key, name, "table names of letters, digits, _ or $")
    s.finish()
    return cfg
