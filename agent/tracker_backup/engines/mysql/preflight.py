"""check-config for [mysql]: connect and list what would make a backup fail, with the fix."""

from __future__ import annotations

import logging

from tracker_backup.engines.mysql.scratch import probe_scratch
from tracker_backup.engines.mysql.server import MysqlServer, grantee
from tracker_backup.errors import RunFailed, SourceError

log = logging.getLogger(__name__)


def preflight(server: MysqlServer) -> list[str]:
    """Connect and list what would make a backup fail, each with its fix."""
    try:
        tools = server.client.tools()
        info = server.server_info()
        server.select_tables(info)
    except (SourceError, RunFailed) as exc:
        return [str(exc).removeprefix("mysql: ").removeprefix("[mysql] ")]
    problems = []
    who = grantee(info["user"])
    missing = server.missing_dump_privileges(info)
    if missing:
        problems.append(server.grant_hint(info, missing))
    ok, reason = server.binlog_allowed(info, tools)
    if not ok and info["log_bin"]:
        log.warning("mysql: the binlog position will not be recorded: %s", reason)
    if server.cfg.verify == "restore":
        problem = probe_scratch(server, who)
        if problem:
            problems.append(problem)
    return problems

