"""The binlog archive in the commands: `restore --at`, the drill's random second, list/status.

Glue between the binlog library (pitr.py, replay.py) and the agent's store and
commands: the dump of the chosen snapshot is loaded by the engine's ordinary
restore (engines/mysql/restore.py, checksums first), then the archived binlog
is replayed through the plain client, then every table is counted and checked.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import dataclass, field

from tracker_backup import restore_plan
from tracker_backup.archive import retention as archive_retention
from tracker_backup.archive import status as archive_status
from tracker_backup.archive.store import SourceArchive
from tracker_backup.archive.times import parse_at
from tracker_backup.engines.contract import Part, RestoreAction, RestoreResult, RestoreStep
from tracker_backup.engines.mysql import restore as mysql_restore
from tracker_backup.engines.mysql.binlog import checks, pitr
from tracker_backup.engines.mysql.client import MysqlClient, quote_str, read_password
from tracker_backup.engines.mysql.config import MysqlConfig
from tracker_backup.engines.mysql.scratch import create_scratch, drop_scratch, scratch_name, unlogged_loads
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.store import Snapshot, Store

log = logging.getLogger(__name__)
SOURCE = "mysql"
BEHIND_WARN = 1 << 20  # bytes of binlog the archiver may trail the server before status warns


@dataclass
class MysqlPitrRestored(RestoreResult):
    """A database restored to a point in time: dump + replayed binlog, checked."""

    row_counts: dict[str, int] = field(default_factory=dict)
    reached: str = ""

    def describe(self) -> str:
        return f"mysql -> database {self.target} ({self.reached})"


def _config(config, args: argparse.Namespace | None) -> MysqlConfig:
    cfg = config.section(SOURCE)
    if cfg is None:
        raise UsageError("no [mysql] section configured: the restore needs its connection "
                         "settings (socket/host, user, password_file, exec_prefix)")
    if args is not None:
        cfg = mysql_restore.with_account(cfg, getattr(args, "mysql_user", None),
                                         getattr(args, "mysql_password_file", None))
    return cfg


def _dump_loader(config, cfg: MysqlConfig, target: str, unlogged: bool = False):
    """load(snapshot_id): the snapshot's dump into `target`, checksums first (engine restore);
    unlogged for a scratch database the account may keep out of the binary log."""
    def load(snapshot_id: str) -> dict:
        snap = Store(config.backup.path).get(snapshot_id)
        parts = restore_plan.parts_of(snap, (SOURCE,))
        restore_plan.verify_parts(snap, parts)
        part = parts[0]
        done = mysql_restore.restore(restore_plan.artifact_path(snap, part.artifacts[0]), part,
                                     cfg, target, unlogged=unlogged)
        return {"snapshot": snapshot_id, "bytes": done.bytes, "seconds": done.seconds}
    return load


def plan_restore_at(config, at_text: str, args: argparse.Namespace | None) -> RestoreStep:
    """`restore --kind mysql --at TIME|latest [--database NAME]`: dump + archived binlog."""
    try:
        at = parse_at(at_text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cfg = _config(config, args)
    target = (getattr(args, "database", None) if args is not None else None) or cfg.database
    plan = pitr.plan(config.backup.path, at, SOURCE)
    client = MysqlClient(cfg, read_password(cfg))
    part = Part(SOURCE, SOURCE, {"database": cfg.database}, [])
    action = RestoreAction("mysql", f"database {target} as at {pitr.format_time(at)}")
    existing = client.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                            f"{quote_str(target)}", what="list tables")
    action.replaces = [f"table {target}.{r[0]} (dropped, re-created from the dump, then the "
                       "binlog replayed)" for r in existing]
    action.notes.append(plan.describe())

    def run(ctx) -> MysqlPitrRestored:
        del ctx
        tools = client.tools()
        done = pitr.restore_at(client, tools, config.backup.path, at, source_db=cfg.database,
                               target_db=target, load_dump=_dump_loader(config, cfg, target),
                               source=SOURCE)
        reached = (f"dump of {done['snapshot']} + {done['transactions']} archived transaction(s) "
                   f"up to {done['last_commit']}; CHECK TABLE ok")
        return MysqlPitrRestored("mysql", target, done["binlog_bytes"], done["seconds"],
                                 row_counts=done["row_counts"], reached=reached)

    return RestoreStep(part, action, run)


def drill_at(config, rng: random.Random | None = None) -> dict | None:
    """Restore to a random second of the archive into a scratch database, check it, drop it."""
    cfg = config.section(SOURCE)
    if cfg is None or not SourceArchive(config.backup.path, SOURCE).generations():
        return None
    at = pitr.random_point(config.backup.path, SOURCE, rng)
    if at is None:
        return None
    client = MysqlClient(cfg, read_password(cfg))
    s = checks.server_settings(client)
    problem = checks.replay_problem(flavour=s["flavour"], privileges=s["privileges"],
                                    grantee=s["grantee"])
    if problem:
        raise RunFailed(f"mysql: archive drill not possible: {problem}")
    name = scratch_name()
    t0 = time.monotonic()
    # Out of the binlog if the account may: else the archiver streams the drill's load too.
    unlogged = unlogged_loads(client)
    create_scratch(client, name, unlogged)
    try:
        done = pitr.restore_at(client, client.tools(), config.backup.path, at,
                               source_db=cfg.database, target_db=name,
                               load_dump=_dump_loader(config, cfg, name, unlogged), source=SOURCE,
                               unlogged=unlogged)
    finally:
        drop_scratch(client, name, unlogged)  # if it fails, the next drill's sweep drops it
    return {"at": pitr.format_time(at), "snapshot": done["snapshot"],
            "generation": done["generation"], "transactions": done["transactions"],
            "last_commit": done["last_commit"], "row_counts": done["row_counts"],
            "scratch_database": name, "unlogged": unlogged,
            "seconds": round(time.monotonic() - t0, 3),
            "summary": (f"archive restored to {pitr.format_time(at)} in scratch database {name} "
                        f"(dropped): dump of {done['snapshot']} + {done['transactions']} "
                        f"transaction(s), CHECK TABLE ok")}


def report(config, snapshots: list[Snapshot] | None = None) -> dict | None:
    """The archive's restorable range and the archiver's state (None: no archive)."""
    del snapshots  # dumps are found by pitr.spans itself
    cfg = config.section(SOURCE)
    expected = bool(cfg and cfg.continuous)
    backup_path = config.backup.path
    if not expected and not SourceArchive(backup_path, SOURCE).generations():
        return None
    rng = pitr.describe(backup_path, SOURCE)
    st = archive_status.read_status(backup_path, SOURCE) or {}
    out = archive_status.summary(backup_path, SOURCE, expected=expected)
    behind = st.get("bytes_behind")
    if expected and isinstance(behind, int) and behind > BEHIND_WARN:
        out["warnings"].append(f"{SOURCE}: the archiver is {behind} bytes of binlog behind the server")
    out.update(oldest=rng["oldest"], newest=rng["newest"], generations=rng["generations"],
               oldest_iso=pitr.format_time(rng["oldest"]) if rng["oldest"] else None,
               newest_iso=pitr.format_time(rng["newest"]) if rng["newest"] else None,
               binlog_file=st.get("binlog_file"), binlog_pos=st.get("binlog_pos"),
               bytes_behind=behind)
    return out


def prune(config, kept: list[Snapshot], dry_run: bool) -> list[str]:
    """Archive retention given the snapshots kept: the oldest kept dump is the anchor.

    A kept dump needs the archive from its binlog file's format description on
    (replay reads from there), so that entry is what the generic rule keeps.
    """
    backup_path = config.backup.path
    archive = SourceArchive(backup_path, SOURCE)
    if not archive.generations():
        return []
    kept_ids = {s.id for s in kept if s.good}
    kept_bases: dict[str, list[int]] = {}
    for span in pitr.spans(backup_path, SOURCE):
        for base in span.bases:
            if base.snapshot in kept_ids:
                kept_bases.setdefault(span.generation.id, []).append(max(0, base.fde_seq - 1))
    return archive_retention.prune_for(archive, kept_bases, kept, config.retention.keep_days, dry_run)
