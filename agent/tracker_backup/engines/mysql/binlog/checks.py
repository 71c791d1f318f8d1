"""What binlog archiving needs from the server, checked before it starts (and by check-config).

Each problem is a sentence naming the server setting or the privilege, with
the fix. The spellings differ by flavour and version:

| need                 | MariaDB (10.5+)         | MySQL 8.0 / 8.4                                   |
|----------------------|-------------------------|---------------------------------------------------|
| read the binlog      | REPLICATION SLAVE       | REPLICATION SLAVE (8.0.22+: REPLICATION REPLICA)  |
| list binlogs         | BINLOG MONITOR          | REPLICATION CLIENT                                |
| current position     | SHOW MASTER STATUS      | SHOW MASTER STATUS; 8.4: SHOW BINARY LOG STATUS   |
| binary logging       | off by default: log_bin | on by default (log_bin)                           |
"""

from __future__ import annotations

from tracker_backup.engines.mysql.client import MysqlClient, quote_str

STREAM_PRIVILEGE = "REPLICATION SLAVE"


def monitor_privilege(flavour: str) -> str:
    """The privilege SHOW BINARY LOGS needs, in this flavour's name."""
    return "BINLOG MONITOR" if flavour == "mariadb" else "REPLICATION CLIENT"


def status_statement(flavour: str, version: tuple[int, ...]) -> str:
    """The statement that shows the server's current binlog file and position."""
    if flavour == "mysql" and version >= (8, 2, 0):
        return "SHOW BINARY LOG STATUS"  # SHOW MASTER STATUS is gone in 8.4
    return "SHOW MASTER STATUS"


def problems(*, flavour: str, log_bin: bool, binlog_format: str, checksum: str,
             privileges: set[str], grantee: str) -> list[str]:
    """Why binlog archiving cannot run (empty: it can)."""
    found = []
    if not log_bin:
        found.append(
            "[mysql] continuous = yes needs the server's binary log, and binary logging is off "
            "(server setting log_bin; off by default in MariaDB, on in MySQL 8). Start the "
            "server with --log-bin=binlog --server-id=1 (docker compose: add them to the mysql "
            "service's command) or set [mysql] continuous = no")
    if checksum.upper() not in ("CRC32", "NONE"):
        found.append(f"server setting binlog_checksum = {checksum}: expected CRC32 (the default) or NONE")
    have = {p.upper() for p in privileges}
    if "ALL PRIVILEGES" not in have:
        missing = [p for p in (STREAM_PRIVILEGE, monitor_privilege(flavour))
                   if p not in have and not (p == STREAM_PRIVILEGE and "REPLICATION REPLICA" in have)
                   and not (p == "BINLOG MONITOR" and "REPLICATION CLIENT" in have)]
        if missing:
            found.append(f"account {grantee} lacks {', '.join(missing)}, which reading the binary "
                         f"log needs. Fix: GRANT {', '.join(missing)} ON *.* TO {grantee};")
    return found


def warnings(*, binlog_format: str) -> list[str]:
    """What works but is worth saying."""
    if binlog_format.upper() != "ROW":
        return [f"server setting binlog_format = {binlog_format}: ROW (MySQL 8's default) is "
                "recommended; with STATEMENT/MIXED, replay keeps the tracker database's statements "
                "by their default database, so statements naming another database are skipped"]
    return []


def server_settings(client: MysqlClient) -> dict:
    """log_bin, binlog_format, binlog_checksum, server_id, server_uuid (MySQL) and the grants."""
    row = client.query("SELECT @@log_bin, @@binlog_format, @@binlog_checksum, @@server_id, "
                       "CURRENT_USER(), VERSION()", what="read binlog settings")[0]
    log_bin, fmt, checksum, server_id, user, version = row
    flavour = "mariadb" if "mariadb" in version.lower() else "mysql"
    uuid = None
    if flavour == "mysql":
        uuid = client.query("SELECT @@server_uuid", what="read server_uuid")[0][0]
    name, _, host = user.rpartition("@")
    grantee = f"{quote_str(name)}@{quote_str(host)}"
    privs = {r[0] for r in client.query(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = "
        f"{quote_str(grantee)}", what="read privileges")}
    return {"log_bin": log_bin == "1", "binlog_format": fmt, "binlog_checksum": checksum,
            "server_id": int(server_id), "server_uuid": uuid, "flavour": flavour, "version": version,
            "grantee": grantee, "privileges": privs}


def binary_logs(client: MysqlClient) -> list[tuple[str, int]]:
    """The binlog files the server still has, oldest first, with their sizes."""
    return [(r[0], int(r[1])) for r in client.query("SHOW BINARY LOGS", what="list binary logs")]


def current_position(client: MysqlClient, flavour: str, version: tuple[int, ...]) -> tuple[str, int]:
    """The server's binlog file and position now."""
    rows = client.query(status_statement(flavour, version), what="read the binlog position")
    if not rows:
        raise ValueError("the server reports no binary log position (binary logging is off: log_bin)")
    return rows[0][0], int(rows[0][1])


def unlogged_drill_note(*, flavour: str, privileges: set[str], grantee: str) -> str | None:
    """Why the drills' scratch loads will go into the binlog (the archiver then streams them),
    or None when the account may SET sql_log_bin (engines/mysql/scratch.py)."""
    from tracker_backup.engines.mysql.scratch import SQL_LOG_BIN_PRIVILEGE

    have = {p.upper() for p in privileges}
    options = ("BINLOG ADMIN", "SUPER") if flavour == "mariadb" else (
        "SESSION_VARIABLES_ADMIN", "SYSTEM_VARIABLES_ADMIN", "SUPER")
    if "ALL PRIVILEGES" in have or any(p in have for p in options):
        return None
    grant = SQL_LOG_BIN_PRIVILEGE.get(flavour, options[0])
    return (f"account {grantee} may not SET sql_log_bin: the drills' scratch databases go into the "
            "server's binary log, and the archiver streams (and lags behind) each drill's load. "
            f"To keep them out: GRANT {grant} ON *.* TO {grantee}; (it also allows PURGE BINARY "
            "LOGS: see docs/mysql.md)")


def replay_problem(*, flavour: str, privileges: set[str], grantee: str) -> str | None:
    """Why this account cannot replay row events (the drill and restore --at), or None.

    mysqlbinlog writes row events as BINLOG '...' statements, which need MariaDB's
    BINLOG REPLAY (10.5.2+) or MySQL's BINLOG_ADMIN / REPLICATION_APPLIER (or SUPER).
    """
    have = {p.upper() for p in privileges}
    options = ("BINLOG REPLAY", "SUPER") if flavour == "mariadb" else (
        "BINLOG_ADMIN", "REPLICATION_APPLIER", "SUPER")
    if "ALL PRIVILEGES" in have or any(p in have for p in options):
        return None
    return (f"account {grantee} lacks {options[0]}, which replaying the archived binlog's row "
            f"events needs (the archive drill uses the [mysql] account). Fix: GRANT {options[0]} "
            f"ON *.* TO {grantee};")
