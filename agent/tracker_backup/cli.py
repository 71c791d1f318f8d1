"""Command line: parse arguments, load the config, call one action, map errors to exit codes.

Exit codes (see errors.py, documented in tracker-backup(8) and README):
  0 success · 1 run/verify/prune/restore failed · 2 bad usage or config · 3 lock held
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from tracker_backup import __version__, logs
from tracker_backup.config import Config, default_config_path, load_config, render_config
from tracker_backup.errors import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    ConfigError,
    RunFailed,
    TrackerBackupError,
)

log = logging.getLogger("tracker_backup")


class Terminated(RunFailed):
    """SIGTERM (systemctl stop) arrived: unwind, clean up, exit non-zero."""


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated("stopped by SIGTERM (systemctl stop?): cleaning up")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit 2, one line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"tracker-backup: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tracker-backup",
                description="Consistent, verified backups of a Torrust tracker host.",
                epilog="exit codes: 0 success, 1 failed, 2 bad usage or configuration, "
                       "3 another run holds the lock")
    p.add_argument("--config", "-c", type=Path, default=None,
                   help=f"configuration file (default: $TRACKER_BACKUP_CONFIG or "
                        f"{default_config_path()})")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument("--quiet", "-q", action="store_true", help="warnings and errors only")
    p.add_argument("--version", action="version", version=f"tracker-backup {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="take one backup: sources → verify → publish → retention")
    r.add_argument("--no-prune", action="store_true",
                   help="do not apply retention afterwards (the systemd unit prunes in "
                        "ExecStartPost=)")
    ls = sub.add_parser("list", help="published snapshots, newest first")
    ls.add_argument("--json", action="store_true")
    v = sub.add_parser("verify", help="re-hash and re-check stored snapshots")
    v.add_argument("id", nargs="?", help="snapshot id or 'latest' (default: latest)")
    v.add_argument("--all", action="store_true", help="verify every snapshot")
    v.add_argument("--json", action="store_true")
    pr = sub.add_parser("prune", help="apply retention, printing what is kept and deleted and why")
    pr.add_argument("--dry-run", action="store_true", help="only print the plan")
    st = sub.add_parser("status", help="last run, last success, snapshots, free space")
    st.add_argument("--json", action="store_true")
    sub.add_parser("check-config", help="validate the configuration and print it")
    sub.add_parser("window-recover",
                   help="start the tracker again if a killed run left a maintenance window open "
                        "(run by the unit's ExecStopPost=)")
    w = sub.add_parser("sqlite-wal", help="switch the SQLite database to WAL mode (once)")
    w.add_argument("--database", type=Path, help="database file (default: [sqlite] database)")
    _add_extension_commands(sub)
    return p


def _add_extension_commands(sub) -> None:
    """Commands provided by optional modules (restore, drill, enable/disable ...)."""
    for module_name in ("restore_cli", "schedule_cli"):
        try:
            module = __import__(f"tracker_backup.actions.{module_name}", fromlist=["register"])
        except ImportError:
            continue
        module.register(sub)


def check_config(config: Config, out) -> int:
    """Print the effective configuration, then run each source's preflight checks.

    A source may define `preflight() -> list[str]` (e.g. MySQL: connect and
    list missing privileges with the GRANT that fixes them).
    """
    from tracker_backup.sources import configured_sources

    out.write(render_config(config))
    problems = []
    for source in configured_sources(config):
        preflight = getattr(source, "preflight", None)
        if preflight is not None:
            problems += [f"[{source.name}] {p}" for p in preflight()]
    for problem in problems:
        print(f"PROBLEM: {problem}", file=out)
    if problems:
        raise ConfigError(f"{config.file}: {len(problems)} problem(s) found by the checks above")
    print(f"; {config.file}: configuration OK", file=out)
    return EXIT_OK


def dispatch(args: argparse.Namespace, config: Config) -> int:
    out = sys.stdout
    cmd = args.command
    if cmd == "run":
        from tracker_backup.actions.run import run

        snap_id = run(config, prune=not args.no_prune)
        print(snap_id, file=out)
        return EXIT_OK
    if cmd == "list":
        from tracker_backup.actions.inspect import list_snapshots

        return list_snapshots(config, as_json=args.json, out=out)
    if cmd == "verify":
        from tracker_backup.actions.verify import verify

        return verify(config, snap_id=args.id, all_snapshots=args.all, as_json=args.json, out=out)
    if cmd == "prune":
        from tracker_backup.actions.prune import prune

        prune(config, dry_run=args.dry_run, out=out)
        return EXIT_OK
    if cmd == "status":
        from tracker_backup.actions.inspect import status

        return status(config, as_json=args.json, out=out)
    if cmd == "check-config":
        return check_config(config, out)
    if cmd == "window-recover":
        from tracker_backup.actions.run import window_recover

        return window_recover(config, out)
    if cmd == "sqlite-wal":
        from tracker_backup.actions.sqlite_wal import sqlite_wal

        return sqlite_wal(config, database=args.database, out=out)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse guarantees a known command
        raise ConfigError(f"unknown command {cmd}")
    return handler(args, config, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tracker-backup` console script."""
    os.umask(0o077)  # snapshot files 0600, directories 0700, whatever the caller's umask
    args = build_parser().parse_args(argv)
    logs.setup_logging(verbose=args.verbose, quiet=args.quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # SIGTERM unwinds by an exception that may land inside a constructor; the half-built
    # object's __del__ then fails. Log that at debug level, never as a traceback.
    sys.unraisablehook = lambda u: log.debug("ignored during cleanup: %s: %s",
                                             u.exc_type.__name__, u.exc_value)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logs.event("config-error", f"configuration error: {exc}", error=True)
        return exc.exit_code
    try:
        return dispatch(args, config)
    except TrackerBackupError as exc:
        if args.command != "run":
            log.error("%s", exc)  # `run` already logged its structured failure event
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_RUN_FAILED
    except BrokenPipeError:
        return EXIT_RUN_FAILED
    except OSError as exc:  # disk full, read-only, I/O error outside `run`: say what and where
        where = f": {exc.filename}" if exc.filename else ""
        log.error("%s failed: %s%s", args.command, exc.strerror or exc, where)
        return EXIT_RUN_FAILED
    except Exception as exc:  # noqa: BLE001 - last line of defence: a message, not a traceback
        log.error("internal error: %s: %s (rerun with -v for details)", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return EXIT_RUN_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
