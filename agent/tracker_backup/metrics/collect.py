"""Read the store's state into metric families (what `status --json` shows, as numbers).

Sources of the values: `.state/status.json` (last run, last success, the
failure counter), the published manifests (snapshot counts and sizes per
source, the restorable range), `.state/checks.json` (restore drills), the
backup path's file system (free space), `[schedule]`, and for each source
with continuous archiving the engine's archive report (its range) and the
archiver's own `archive/<source>/status.json` (lag, stalled, last report),
which the running archiver rewrites every few seconds: the same files
`status --json` reads.

Labels never carry a path, a host name or a credential: only engine names
(`source`), `state` and the agent's version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tracker_backup import __version__
from tracker_backup.config import Config
from tracker_backup.metrics.exposition import Family
from tracker_backup.store import Snapshot, Store, parse_iso

PREFIX = "tracker_backup_"


@dataclass(frozen=True)
class ArchiveHealth:
    """One source's continuous archive, as its archiver last reported it (Unix seconds).

    `lag_seconds` is the age of the oldest committed change not yet durable in the
    archive (0 when caught up); `stalled` is true while shipping is stopped.
    """

    source: str
    lag_seconds: float | None
    updated: float | None
    stalled: bool = False
    oldest_restorable: float | None = None
    newest_restorable: float | None = None


# name (without prefix) → (type, help). The catalogue of everything the agent can emit;
# tests check the dashboard and the alert rules against it.
CATALOGUE: dict[str, tuple[str, str]] = {
    "build_info": ("gauge", "Version of the tracker-backup agent that wrote these metrics (always 1)."),
    "last_run_timestamp_seconds": ("gauge", "Unix time the last backup run finished, succeeded or not."),
    "last_run_success": ("gauge", "1 if the last backup run succeeded, 0 if it failed."),
    "run_duration_seconds": ("gauge", "Wall-clock duration of the last backup run in seconds."),
    "last_success_timestamp_seconds": (
        "gauge", "Unix time the last successful backup run finished (0: never)."),
    "run_failures_total": ("counter", "Backup runs that failed, since the backup path was created."),
    "snapshots": ("gauge", "Published snapshots in the backup path, by state (good or damaged)."),
    "snapshot_bytes": ("gauge", "Stored bytes of the newest good snapshot, per source."),
    "stored_bytes": ("gauge", "Stored bytes of all published snapshots."),
    "backup_path_free_bytes": ("gauge", "Bytes available to the agent on the backup path's file system."),
    "backup_path_size_bytes": ("gauge", "Size in bytes of the backup path's file system."),
    "restorable_oldest_timestamp_seconds": (
        "gauge", "Unix time of the oldest point that can be restored (snapshot or archive)."),
    "restorable_newest_timestamp_seconds": (
        "gauge", "Unix time of the newest point that can be restored (snapshot or archive)."),
    "drill_last_run_timestamp_seconds": ("gauge", "Unix time the last restore drill finished."),
    "drill_last_run_success": (
        "gauge", "1 if the last restore drill restored and checked its snapshot, else 0."),
    "drill_last_success_timestamp_seconds": (
        "gauge", "Unix time of the last successful restore drill (0: never)."),
    "drill_rto_seconds": ("gauge", "Time the last restore drill took to restore and check (the RTO)."),
    "schedule_enabled": ("gauge", "1 if [schedule] enabled = yes (the backup timer should run)."),
    "schedule_interval_seconds": (
        "gauge", "Seconds between two scheduled backup runs ([schedule] on_calendar)."),
    "schedule_randomized_delay_seconds": ("gauge", "[schedule] randomized_delay in seconds."),
    "archive_enabled": ("gauge", "1 if continuous archiving is configured for the source."),
    "archive_lag_seconds": (
        "gauge", "Age of the oldest committed change not yet in the continuous archive, per source."),
    "archive_stalled": ("gauge", "1 while the archiver cannot write the backup path, per source."),
    "archive_updated_timestamp_seconds": (
        "gauge", "Unix time the continuous archiver last reported, per source."),
}


def _ts(text: object) -> float | None:
    """Unix seconds of one of the store's ISO times, or None when absent or malformed."""
    if not isinstance(text, str):
        return None
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        return None


def _families() -> dict[str, Family]:
    return {name: Family(PREFIX + name, kind, text) for name, (kind, text) in CATALOGUE.items()}


def collect(config: Config, *, interval: float | None) -> list[Family]:
    """All families for one configuration (`interval`: seconds between scheduled runs).

    Values are stored times, never ages: Prometheus computes ages with time(), so a
    file that stopped being updated still shows how old the last backup is.
    """
    fam = _families()
    fam["build_info"].add(1, version=__version__)
    store = Store(config.backup.path)
    present = store.path.is_dir()
    _runs(fam, store.read_status() if present else {})
    snaps = store.snapshots()
    good = [s for s in snaps if s.good]
    fam["snapshots"].add(len(good), state="good")
    fam["snapshots"].add(len(snaps) - len(good), state="damaged")
    fam["stored_bytes"].add(sum(s.size for s in snaps))
    if good:
        for source, size in sorted(_bytes_per_source(good[0]).items()):
            fam["snapshot_bytes"].add(size, source=source)
    if present:
        st = os.statvfs(store.path)
        fam["backup_path_free_bytes"].add(st.f_bavail * st.f_frsize)
        fam["backup_path_size_bytes"].add(st.f_blocks * st.f_frsize)
    archives = archive_health(config, snaps)
    _restorable(fam, good, archives)
    _drills(fam, snaps)
    s = config.schedule
    fam["schedule_enabled"].add(s.enabled)
    if interval:
        fam["schedule_interval_seconds"].add(interval)
    fam["schedule_randomized_delay_seconds"].add(s.randomized_delay)
    for a in archives:
        fam["archive_enabled"].add(1, source=a.source)
        if a.updated is not None:  # the archiver has reported at least once
            fam["archive_updated_timestamp_seconds"].add(a.updated, source=a.source)
            fam["archive_stalled"].add(a.stalled, source=a.source)
        if a.lag_seconds is not None:
            fam["archive_lag_seconds"].add(a.lag_seconds, source=a.source)
    return list(fam.values())


def archive_health(config: Config, snaps: list[Snapshot]) -> list[ArchiveHealth]:
    """Each source configured for continuous archiving: its range and the archiver's report.

    A source whose archiving was switched off is left out even if its archive
    remains: its archiver's last report would only age and alert.
    """
    from tracker_backup import engines
    from tracker_backup.archive.status import read_status

    out = []
    for engine in engines.configured(config):
        report = engine.archive_report(config, snaps)
        if not report or not report.get("configured"):
            continue
        st = read_status(config.backup.path, engine.kind) or {}
        out.append(ArchiveHealth(
            source=engine.kind,
            lag_seconds=_number(st.get("lag_seconds")),
            updated=_number(st.get("updated")),
            stalled=bool(st.get("stalled")),
            oldest_restorable=_number(report.get("oldest")),
            newest_restorable=_number(report.get("newest"))))
    return out


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _runs(fam: dict[str, Family], state: dict) -> None:
    last, ok = state.get("last_run"), state.get("last_success")
    if last:
        if (finished := _ts(last.get("finished"))) is not None:
            fam["last_run_timestamp_seconds"].add(finished)
        fam["last_run_success"].add(last.get("result") == "success")
        fam["run_duration_seconds"].add(last["duration_sec"])
    fam["last_success_timestamp_seconds"].add((_ts(ok.get("finished")) if ok else None) or 0)
    fam["run_failures_total"].add(state.get("run_failures_total", 0))


def _bytes_per_source(snap: Snapshot) -> dict[str, int]:
    sizes = {name: 0 for name in (snap.manifest or {}).get("sources", {})}
    for art in (snap.manifest or {}).get("artifacts", []):
        sizes[art["source"]] = sizes.get(art["source"], 0) + art["bytes"]
    return sizes


def _restorable(fam: dict[str, Family], good: list[Snapshot],
                archives: list[ArchiveHealth]) -> None:
    points = [t.timestamp() for s in good if (t := s.started) is not None]
    for a in archives:
        points += [t for t in (a.oldest_restorable, a.newest_restorable) if t]
    if points:
        fam["restorable_oldest_timestamp_seconds"].add(min(points))
        fam["restorable_newest_timestamp_seconds"].add(max(points))


def _drills(fam: dict[str, Family], snaps: list[Snapshot]) -> None:
    """The same drills `status` reports: the newest by time, and the newest that passed."""
    drills = []
    for snap in snaps:
        drill = (snap.check or {}).get("drill")
        if isinstance(drill, dict) and (at := _ts(drill.get("at"))) is not None:
            drills.append((at, drill))
    drills.sort(key=lambda d: d[0], reverse=True)
    if drills:
        at, last = drills[0]
        fam["drill_last_run_timestamp_seconds"].add(at)
        fam["drill_last_run_success"].add(last.get("result") == "ok")
        if isinstance(last.get("rto_sec"), int | float):
            fam["drill_rto_seconds"].add(last["rto_sec"])
    passed = [at for at, d in drills if d.get("result") == "ok"]
    fam["drill_last_success_timestamp_seconds"].add(passed[0] if passed else 0)
