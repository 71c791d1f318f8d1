"""What a MySQL/MariaDB server holds and what the backup account may do there.

Client and server may be MariaDB or MySQL. Credentials: see client.py.
"""

from __future__ import annotations

import re

from tracker_backup.engines.mysql.client import MysqlClient, Tools, quote_ident, quote_str, read_password
from tracker_backup.engines.mysql.config import MysqlConfig
from tracker_backup.errors import SourceError

DUMP_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER")


def grantee(current_user: str) -> str:
    user, _, host = current_user.rpartition("@")
    return f"{quote_str(user)}@{quote_str(host)}"


def like_regex(pattern: str) -> re.Pattern:
    """A SQL LIKE pattern (as in grants on `db\\_%`) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.I)



class MysqlServer:
    """One configured MySQL/MariaDB database: its connection and what the account may do."""

    def __init__(self, cfg: MysqlConfig, name: str = "mysql"):
        # `name` lets several jobs (e.g. critical tables daily, stats weekly) keep their
        # artifacts and manifest entries apart: <name>/<database>.sql
        self.cfg = cfg
        self.name = name
        self._client: MysqlClient | None = None

    @property
    def client(self) -> MysqlClient:
        if self._client is None:
            self._client = MysqlClient(self.cfg, read_password(self.cfg))
        return self._client

    def origin(self) -> str:
        """database@where (via exec_prefix): the manifest's origin."""
        where = (str(self.cfg.socket) if self.cfg.socket else
                 f"{self.cfg.host}:{self.cfg.port}" if self.cfg.host else "default socket")
        prefix = f" via {' '.join(self.cfg.exec_prefix)}" if self.cfg.exec_prefix else ""
        return f"{self.cfg.database}@{where}{prefix}"

    def server_info(self) -> dict:
        """Connect; return user, version, flavour, log_bin and the database's base tables."""
        db = quote_str(self.cfg.database)
        rows = self.client.query(
            "SELECT CURRENT_USER(), VERSION(), @@log_bin;\n"
            f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {db};",
            what="connect")
        # --batch prints each statement's rows in turn: first row, then the count.
        user, version, log_bin = rows[0][0], rows[0][1], rows[0][2]
        if rows[1][0] == "0":
            raise SourceError(f"mysql: database {self.cfg.database!r} does not exist on the "
                              f"server ({self.origin()}), or {user} may not see it")
        tables = self.client.query(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {db} ORDER BY TABLE_NAME", what="list tables")
        return {"user": user, "version": version,
                "flavour": "mariadb" if "mariadb" in version.lower() else "mysql",
                "log_bin": log_bin == "1",
                "tables": [t[0] for t in tables if t[1] == "BASE TABLE"],
                "views": [t[0] for t in tables if t[1] != "BASE TABLE"]}

    def privileges(self, user: str) -> tuple[set[str], set[str], dict[str, set[str]]]:
        """(global, on this database, per table) privileges of the connected account."""
        quoted = quote_str(grantee(user))
        rows = self.client.query(
            "SELECT 'g', PRIVILEGE_TYPE, '' FROM information_schema.USER_PRIVILEGES "
            f"WHERE GRANTEE = {quoted} UNION ALL "
            "SELECT 's', PRIVILEGE_TYPE, TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES "
            f"WHERE GRANTEE = {quoted} UNION ALL "
            "SELECT 't', PRIVILEGE_TYPE, TABLE_NAME FROM information_schema.TABLE_PRIVILEGES "
            f"WHERE GRANTEE = {quoted} AND TABLE_SCHEMA = {quote_str(self.cfg.database)}",
            what="read privileges")
        glob, schema, table = set(), set(), {}
        for level, priv, where in rows:
            if level == "g":
                glob.add(priv)
            elif level == "s" and like_regex(where).match(self.cfg.database):
                schema.add(priv)
            elif level == "t":
                table.setdefault(where, set()).add(priv)
        return glob, schema, table

    def select_tables(self, info: dict) -> list[str]:
        """The tables to dump: [mysql] tables, or all but exclude_tables; check they exist."""
        present = info["tables"] + info["views"]
        wanted = list(self.cfg.tables) or present
        missing = [t for t in (*self.cfg.tables, *self.cfg.exclude_tables) if t not in present]
        if missing:
            key = "tables" if self.cfg.tables else "exclude_tables"
            raise SourceError(f"mysql: [mysql] {key} names {', '.join(missing)}, not in database "
                              f"{self.cfg.database!r} (it has: {', '.join(present) or 'no tables'})")
        chosen = [t for t in wanted if t not in self.cfg.exclude_tables]
        if not chosen:
            raise SourceError(f"mysql: nothing to dump: database {self.cfg.database!r} has no "
                              "tables left after [mysql] tables/exclude_tables")
        return chosen

    def binlog_allowed(self, info: dict, tools: Tools) -> tuple[bool, str | None]:
        """Whether to record binlog coordinates; else the reason (logged)."""
        if not info["log_bin"]:
            return False, "binary logging is off on the server"
        if info["flavour"] == "mariadb" and tools.flavour == "mariadb":
            # MariaDB reads the position from the consistent snapshot itself
            # (Binlog_snapshot_file/position): no extra privilege, no global lock.
            return True, None
        glob, _, _ = self.privileges(info["user"])
        needed = {"RELOAD", "REPLICATION CLIENT"}
        if "ALL PRIVILEGES" in glob or needed <= glob:
            return True, None
        return False, (f"the account lacks {', '.join(sorted(needed - glob))} (fix: GRANT RELOAD, "
                       f"REPLICATION CLIENT ON *.* TO {grantee(info['user'])})")

    def missing_dump_privileges(self, info: dict) -> list[str]:
        """Which of SELECT, SHOW VIEW, TRIGGER the account lacks on the tables to dump."""
        glob, schema, table = self.privileges(info["user"])
        have = glob | schema
        if "ALL PRIVILEGES" in have:
            return []
        tables = self.cfg.tables or [t for t in info["tables"] if t not in self.cfg.exclude_tables]
        return [p for p in DUMP_PRIVILEGES
                if p not in have and not all(p in table.get(t, ()) for t in tables)]

    def grant_hint(self, info: dict, missing: list[str]) -> str:
        who = grantee(info["user"])
        return (f"account {who} lacks {', '.join(missing)} on {self.cfg.database!r}, which "
                f"mysqldump needs (without TRIGGER or SHOW VIEW it silently leaves triggers or "
                f"views out). Fix: GRANT {', '.join(DUMP_PRIVILEGES)} ON "
                f"{quote_ident(self.cfg.database)}.* TO {who};")

