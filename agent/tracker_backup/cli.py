"""Command line: parse arguments, load the config, call one command, map errors to exit codes.

The verbs live in commands/ (one module each, registered by commands.register_all).

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

from tracker_backup import __version__, commands, logs
from tracker_backup.config import Config, default_config_path, load_config
from tracker_backup.errors import (
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
    commands.register_all(sub)
    return p


def dispatch(args: argparse.Namespace, config: Config | None) -> int:
    """Run the chosen command's handler (every command sets one)."""
    return args.handler(args, config, sys.stdout)


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
        # Commands that make the configuration (init) run without one.
        config = load_config(args.config) if getattr(args, "needs_config", True) else None
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
    finally:
        # Commands that change what the metrics say (run, prune, verify, drill) set
        # refresh_metrics; succeeded or failed, the textfile then shows the outcome.
        if getattr(args, "refresh_metrics", False) and config.metrics.textfile is not None:
            from tracker_backup import metrics

            metrics.refresh(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
