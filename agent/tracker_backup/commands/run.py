"""`tracker-backup run`: the backup pipeline, in one place.

sources (each configured engine, in registry order, into one staging
directory) → size check of every artifact → manifest → publish (the atomic
rename) → status record → retention. A failed run publishes nothing and
deletes nothing; an interrupted one leaves staging debris the next run removes.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time

from tracker_backup import __version__, engines, logs, systemd
from tracker_backup.config import Config
from tracker_backup.engines.contract import RunContext, SourceResult
from tracker_backup.errors import EXIT_OK, LockHeld, RunFailed, TrackerBackupError, VerifyFailed
from tracker_backup.manifest import Manifest
from tracker_backup.store import FORMAT_VERSION, MANIFEST, Staging, Store, iso, utc_now
from tracker_backup.throttle import RateLimiter, lower_priority
from tracker_backup.window import WindowJournal

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the `run` subcommand."""
    r = subparsers.add_parser("run", help="take one backup: sources → verify → publish → retention")
    r.add_argument("--no-prune", action="store_true",
                   help="do not apply retention afterwards (the systemd unit prunes in "
                        "ExecStartPost=)")
    r.set_defaults(handler=_handler, refresh_metrics=True)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    snap_id = run(config, prune=not args.no_prune)
    # The bare id is for scripts capturing stdout; in the journal it would be a line
    # without context (the run-succeeded event already carries SNAPSHOT=).
    if not (out is sys.stdout and systemd.stdout_is_journal()):
        print(snap_id, file=out)
    return EXIT_OK


def run(config: Config, *, prune: bool = True) -> str:
    """Take one snapshot; return its id. Raises TrackerBackupError on failure."""
    store = Store(config.backup.path)
    started = utc_now()
    t0 = time.monotonic()
    snap_id = None
    prepared = published = False
    try:
        lower_priority()
        store.prepare(require_mountpoint=config.backup.require_mountpoint)
        prepared = True
        with store.lock("run"):
            for name in store.remove_debris():
                log.info("removed %s left by an interrupted run", name)
            WindowJournal(store.window_journal_path).recover()
            _say_space(config)
            staging = store.new_staging(started)
            snap_id = staging.id
            try:
                results = _back_up_sources(config, store, staging)  # sources → staging
                _check_sizes(staging, results)
                manifest = _manifest(config, staging, results)
                store.publish(staging, manifest)  # the commit point: one atomic rename
            except BaseException:
                store.discard(staging)
                raise
            published = True
            duration = time.monotonic() - t0
            total = sum(a["bytes"] for a in manifest["artifacts"])
            store.record_run({"result": "success", "snapshot": snap_id, "started": iso(started),
                              "finished": iso(utc_now()), "duration_sec": round(duration, 3),
                              "bytes": total})
            fields = {}
            for name, src in manifest["sources"].items():
                fields[f"{name}_method"] = src.get("method")
                fields[f"{name}_bytes"] = sum(a["bytes"] for a in manifest["artifacts"]
                                              if a["source"] == name)
            logs.event("run-succeeded",
                       f"backup {snap_id} succeeded: {len(manifest['artifacts'])} artifacts, "
                       f"{total} bytes in {duration:.1f}s",
                       snapshot=snap_id, bytes=total, duration_sec=f"{duration:.3f}",
                       sources=",".join(manifest["sources"]), **fields)
        if prune:
            from tracker_backup.commands.prune import prune as do_prune

            do_prune(config, dry_run=False)
        return snap_id
    except (TrackerBackupError, KeyboardInterrupt, OSError) as exc:
        if isinstance(exc, OSError):  # disk full, I/O error, permission: a failed run
            exc = RunFailed(f"{exc.strerror or exc}"
                            + (f": {exc.filename}" if getattr(exc, "filename", None) else ""))
        duration = time.monotonic() - t0
        message = str(exc) or type(exc).__name__
        # Interrupted inside publish() after its rename (the commit point): published all the same.
        published = published or bool(snap_id and (store.path / snap_id / MANIFEST).is_file())
        if published:  # e.g. status write or retention failed: the snapshot itself is complete
            message = f"snapshot {snap_id} was published, but then: {message}"
        if prepared and (published or not isinstance(exc, LockHeld)):
            try:
                store.record_run({"result": "failed", "error": message, "started": iso(started),
                                  "finished": iso(utc_now()), "duration_sec": round(duration, 3),
                                  "snapshot": snap_id if published else None})
            except OSError as os_exc:
                log.warning("could not record the failed run's status: %s", os_exc)
        kind = "lock-held" if isinstance(exc, LockHeld) else "run-failed"
        logs.event(kind, message if published else f"backup failed, nothing published: {message}",
                   error=True, duration_sec=f"{duration:.3f}", error_text=message,
                   snapshot=snap_id if published else None)
        raise exc from None


def _say_space(config: Config) -> None:
    """Before anything is written: how much the run needs against what is free."""
    from tracker_backup.space import space_report

    space = space_report(config)
    if space.short:
        log.warning("%s: the run may fail for lack of space", space.line())
    else:
        log.info("%s", space.line())
    logs.progress(space.line())


def _back_up_sources(config: Config, store: Store, staging: Staging) -> list[SourceResult]:
    """Each configured engine, in registry order, writes its artifacts into staging."""
    ctx = RunContext(staging=staging.path, backup=config.backup,
                     limiter=RateLimiter(config.backup.rate_limit_bytes),
                     progress=logs.progress, window_journal=store.window_journal_path)
    results = []
    for engine in engines.configured(config):
        ctx.progress(f"{engine.kind}: starting")
        t = time.monotonic()
        result = engine.backup(config, ctx)
        result.details["seconds"] = round(time.monotonic() - t, 3)
        log.info("%s: %s of %s done in %.1fs", result.name, result.method, result.origin,
                 time.monotonic() - t)
        results.append(result)
    return results


def _check_sizes(staging: Staging, results: list[SourceResult]) -> None:
    """Every artifact on disk has the size it was written with.

    Each artifact was hashed as it was written (and its content checked by its
    engine); re-reading it here would only read the page cache back. A size
    check catches a truncated file cheaply; `verify` re-hashes from disk.
    """
    for art in (a for r in results for a in r.artifacts):
        size = (staging.path / art.path).stat().st_size
        if size != art.bytes:
            raise VerifyFailed(f"{art.path}: {size} bytes on disk, {art.bytes} written")


def _manifest(config: Config, staging: Staging, results: list[SourceResult]) -> Manifest:
    """MANIFEST.json of the snapshot (docs/format.md)."""
    finished = utc_now()
    return {
        "format": FORMAT_VERSION,
        "id": staging.id,
        "sequence": staging.sequence,
        "started": iso(staging.started),
        "finished": iso(finished),
        "duration_sec": round((finished - staging.started).total_seconds(), 3),
        "host": socket.gethostname(),
        "agent_version": __version__,
        "config_file": str(config.file),
        "compression": config.backup.compression,
        "verification": {"level": config.backup.verify, "result": "ok", "at": iso(finished)},
        "sources": {r.name: r.to_json() for r in results},
        "artifacts": [a.to_json() for a in (a for r in results for a in r.artifacts)],
    }
