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
    if server.cfg.continuous:
        problems += binlog_problems(server)
    return problems


def binlog_problems(server: MysqlServer) -> list[str]:
    """What `[mysql] continuous = yes` needs from the server (log_bin, privileges), with fixes."""
    from tracker_backup.engines.mysql.binlog import checks

    try:
        s = checks.server_settings(server.client)
    except (SourceError, RunFailed) as exc:
        return [f"continuous = yes: {str(exc).removeprefix('mysql: ')}"]
    for line in checks.warnings(binlog_format=s["binlog_format"]):
        log.warning("mysql: %s", line)
    replay = checks.replay_problem(flavour=s["flavour"], privileges=s["privileges"],
                                   grantee=s["grantee"])
    if replay:  # only the drill needs it (restore --at names its own account)
        log.warning("mysql: %s", replay)
    unlogged = checks.unlogged_drill_note(flavour=s["flavour"], privileges=s["privileges"],
                                          grantee=s["grantee"])
    if unlogged and s["log_bin"]:
        log.warning("mysql: %s", unlogged)
    return checks.problems(flavour=s["flavour"], log_bin=s["log_bin"],
                           binlog_format=s["binlog_format"], checksum=s["binlog_checksum"],
                           privileges=s["privileges"], grantee=s["grantee"])

