"""`tracker-backup list`: published snapshots, newest first (read-only)."""

from __future__ import annotations

import json

from tracker_backup.commands.args import view_command
from tracker_backup.commands.status import archive_lines, archive_reports
from tracker_backup.config import Config
from tracker_backup.humanize import human_bytes
from tracker_backup.store import Snapshot, Store


def register(subparsers) -> None:
    """Add the `list` subcommand."""
    view_command(subparsers, "list", help="published snapshots, newest first", view=list_snapshots)


def new_bytes(snap: Snapshot) -> int:
    """Bytes this snapshot added to the backup path when it was made: its artifacts, plus
    the page-store objects it wrote (a page snapshot's `new_bytes`; its index included)."""
    m = snap.manifest or {}
    total = 0
    for name, src in (m.get("sources") or {}).items():
        if isinstance(src, dict) and isinstance(src.get("new_bytes"), int):
            total += src["new_bytes"]
        else:
            total += sum(a.get("bytes", 0) for a in m.get("artifacts", [])
                         if a.get("source") == name)
    return total


def snapshot_row(snap: Snapshot) -> dict:
    """One snapshot as a JSON-ready dict (what `list --json` prints)."""
    m = snap.manifest or {}
    check = snap.check or {}
    verification = "damaged" if snap.problem else (
        check.get("result") and f"{check['result']} ({check.get('kind', 'verify')} "
                                f"{check.get('at', '')})"
    ) or (m.get("verification") or {}).get("result", "unknown")
    return {
        "id": snap.id,
        "time": m.get("started"),
        "sequence": snap.sequence,
        "bytes": snap.size,
        "new_bytes": new_bytes(snap),
        "sources": sorted((m.get("sources") or {}).keys()),
        "verification": verification,
        "last_check": check or None,
        "last_restore_drill": check.get("drill"),
        "good": snap.good,
        "problem": snap.problem,
    }


def list_snapshots(config: Config, *, as_json: bool, out) -> int:
    """Print the store's snapshots (a table, or JSON); always 0."""
    store = Store(config.backup.path)
    snaps = store.snapshots()
    rows = [snapshot_row(s) for s in snaps]
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    archive = archive_lines(archive_reports(config, snaps))
    if not rows:
        print(f"no snapshots in {store.path}", file=out)
        for line in archive:
            print(f"continuous archive: {line}", file=out)
        return 0
    print(f"{'ID':20} {'TIME (UTC)':20} {'SIZE':>10} {'NEW':>10}  {'SOURCES':20} VERIFICATION",
          file=out)
    for r in rows:
        when = (r["time"] or "?")[:19].replace("T", " ")
        drill = r["last_restore_drill"] or {}
        drilled = (f"; drill {drill.get('result')} {drill.get('at', '')[:19].replace('T', ' ')}"
                   if drill else "")
        print(f"{r['id']:20} {when:20} {human_bytes(r['bytes']):>10} "
              f"{human_bytes(r['new_bytes']):>10}  "
              f"{','.join(r['sources']):20} {r['problem'] or r['verification']}{drilled}", file=out)
    for line in archive:
        print(f"continuous archive: {line}", file=out)
    sizes = store_sizes(config)
    print(f"total: {human_bytes(sizes['total_bytes'])} on disk ({len(rows)} snapshots "
          f"{human_bytes(sizes['snapshot_bytes'])}"
          + "".join(f", {k} {human_bytes(v)}" for k, v in sizes["beside"].items() if v)
          + "); SIZE = the snapshot's own files, NEW = what it added when it was made", file=out)
    return 0


def store_sizes(config: Config) -> dict:
    """Bytes of the backup path: snapshot files, engines' stores beside them, the total."""
    from tracker_backup import engines

    store = Store(config.backup.path)
    snapshot_bytes = sum(s.size for s in store.snapshots())
    beside = {f"{e.kind} store": e.stored_bytes(store.path) for e in engines.ENGINES}
    return {"snapshot_bytes": snapshot_bytes, "beside": beside,
            "total_bytes": snapshot_bytes + sum(beside.values())}
