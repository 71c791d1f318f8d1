"""`tracker-backup status`: last run, last success, snapshots, free space (read-only).

Exit status for monitoring: 1 when the last run failed or the last success is older
than twice the schedule (the reason is in the warnings), else 0.
"""

from __future__ import annotations

import json
from datetime import datetime

from tracker_backup import engines
from tracker_backup.commands.args import view_command
from tracker_backup.config import Config
from tracker_backup.errors import EXIT_OK, EXIT_RUN_FAILED
from tracker_backup.humanize import human_age, human_bytes
from tracker_backup.store import Store, free_bytes, parse_iso, utc_now


def register(subparsers) -> None:
    """Add the `status` subcommand."""
    view_command(subparsers, "status", help="last run, last success, snapshots, free space", view=status)


def status_data(config: Config, now: datetime | None = None) -> dict:
    """Everything `status` reports, as a dict."""
    now = now or utc_now()
    store = Store(config.backup.path)
    state = store.read_status() if store.path.is_dir() else {}
    snaps = store.snapshots()
    data: dict = {
        "backup_path": str(store.path),
        "last_run": state.get("last_run"),
        "last_success": state.get("last_success"),
        "run_failures_total": state.get("run_failures_total", 0),
        "snapshots": len(snaps),
        "good_snapshots": sum(1 for s in snaps if s.good),
        "total_bytes": 0,
        "free_bytes": free_bytes(store.path) if store.path.is_dir() else None,
        "warnings": [],
    }
    from tracker_backup.commands.list import store_sizes

    sizes = store_sizes(config)
    data["total_bytes"] = sizes["total_bytes"]  # snapshots and the stores beside them
    data["store_bytes"] = sizes["beside"]
    drills = [{"snapshot": s.id, **s.check["drill"]} for s in snaps
              if s.check and isinstance(s.check.get("drill"), dict)]
    drills.sort(key=lambda d: d.get("at", ""), reverse=True)
    data["last_restore_drill"] = drills[0] if drills else None
    proven = [d for d in drills if d.get("result") == "ok"]
    data["last_proven_restorable"] = proven[0] if proven else None
    last = state.get("last_run")
    if last and last.get("result") == "failed":
        when = str(last.get("finished", "?"))[:19].replace("T", " ")
        data["warnings"].append(f"last run failed at {when} UTC: "
                                f"{last.get('error') or 'see journalctl -u tracker-backup'}")
    last_ok = state.get("last_success")
    if last_ok:
        age = (now - parse_iso(last_ok["finished"])).total_seconds()
        data["last_success_age_sec"] = round(age, 1)
    else:
        data["last_success_age_sec"] = None
        data["warnings"].append("no successful backup recorded")
    data["archive"] = archive_reports(config, snaps)
    for report in data["archive"].values():
        data["warnings"] += report["warnings"]
    try:
        from tracker_backup import schedule_status

        data.update(schedule_status.timer_info(config, data["last_success_age_sec"]))
        data["warnings"] += data.pop("schedule_warnings", [])
    except ImportError:
        pass
    # What monitoring acts on (also the exit status): the last run failed, or backups stopped.
    data["healthy"] = not (last and last.get("result") == "failed") and not data.get("stale")
    return data


def archive_reports(config: Config, snaps) -> dict:
    """Each configured engine's continuous archive report (range, lag, warnings)."""
    reports = {}
    for engine in engines.configured(config):
        report = engine.archive_report(config, snaps)
        if report is not None:
            reports[engine.kind] = report
    return reports


def archive_lines(reports: dict) -> list[str]:
    """The archive's range and lag, one line per source."""
    lines = []
    for kind, r in reports.items():
        if r.get("oldest_iso"):
            span = (f"restorable {r['oldest_iso'][:19].replace('T', ' ')} .. "
                    f"{r['newest_iso'][:19].replace('T', ' ')} UTC")
        else:
            span = "nothing restorable yet"
        lag = r.get("lag_seconds")
        lag_text = f", lag {lag:.1f}s" if lag is not None else ""
        lines.append(f"{kind}: {span}{lag_text}, {len(r.get('generations') or [])} generation(s)")
    return lines


def status(config: Config, *, as_json: bool, out) -> int:
    data = status_data(config)
    code = EXIT_OK if data["healthy"] else EXIT_RUN_FAILED
    if as_json:
        json.dump(data, out, indent=2)
        out.write("\n")
        return code
    last = data["last_run"]
    if last:
        line = (f"last run:     {last['result']} at {last['finished'][:19].replace('T', ' ')} UTC"
                f" ({last['duration_sec']:.1f}s)")
        if last.get("snapshot"):
            line += f", snapshot {last['snapshot']}"
        print(line, file=out)
        if last.get("error"):
            print(f"error:        {last['error']}", file=out)
    else:
        print("last run:     never", file=out)
    ok = data["last_success"]
    if ok:
        print(f"last success: {ok['snapshot']}, {human_age(data['last_success_age_sec'])} ago",
              file=out)
    print(f"snapshots:    {data['snapshots']} ({data['good_snapshots']} good), "
          f"{human_bytes(data['total_bytes'])} in {data['backup_path']}"
          + "".join(f" (of which {k} {human_bytes(v)})" for k, v in data["store_bytes"].items() if v),
          file=out)
    if data["free_bytes"] is not None:
        print(f"free space:   {human_bytes(data['free_bytes'])}", file=out)
    drill = data.get("last_restore_drill")
    if drill:
        print(f"last drill:   {drill.get('result')} at {drill.get('at', '')[:19].replace('T', ' ')}"
              f" UTC, snapshot {drill['snapshot']}, RTO {drill.get('rto_sec', 0):.1f}s", file=out)
    timer = data.get("timer")
    if timer:
        print(f"timer:        {timer}", file=out)
        if not timer.startswith("unknown"):
            print(f"next run:     {data.get('next_run') or 'not scheduled'}", file=out)
    for line in archive_lines(data["archive"]):
        print(f"archive:      {line}", file=out)
    for warning in data["warnings"]:
        print(f"WARNING: {warning}", file=out)
    return code
