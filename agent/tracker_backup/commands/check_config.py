"""`tracker-backup check-config`: print the effective configuration, then look at what it names.

Each configured engine looks at its source (SQLite: the file read-only; MySQL: the account
and its privileges), and the backup path is probed (writable, free space against what the
next run needs). Problems fail the command (exit 2); warnings and notes are printed.
"""

from __future__ import annotations

import argparse

from tracker_backup import engines
from tracker_backup.config import Config, render_config
from tracker_backup.errors import EXIT_OK, ConfigError
from tracker_backup.preflight import Findings, check_backup_path
from tracker_backup.store import Store


def register(subparsers) -> None:
    """Add the `check-config` subcommand."""
    c = subparsers.add_parser(
        "check-config", help="validate the configuration, print it, and look at the database "
                             "and the backup path")
    c.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    return check_config(config, out)


def next_run_bytes(config: Config) -> tuple[int | None, str]:
    """About how much the next run stores, and how that was estimated."""
    good = [s for s in Store(config.backup.path).snapshots() if s.good]  # newest first
    if good:
        return good[0].size, f"the size of the last snapshot, {good[0].id}"
    sizes = {e.kind: e.estimated_bytes(config) for e in engines.configured(config)}
    known = {k: v for k, v in sizes.items() if v is not None}
    if not known:
        return None, ""
    return sum(known.values()), "no snapshot yet: the uncompressed size of " + ", ".join(
        f"[{k}]" for k in known)


def findings(config: Config) -> Findings:
    """Everything check-config looks at, beyond the syntax."""
    found = Findings()
    for engine in engines.configured(config):
        found.extend(engine.preflight(config), prefix=f"[{engine.kind}] ")
    needed, why = next_run_bytes(config)
    found.extend(check_backup_path(config.backup.path,
                                   require_mountpoint=config.backup.require_mountpoint,
                                   needed_bytes=needed, needed_why=why))
    return found


def check_config(config: Config, out, *, show_config: bool = True, name: str | None = None) -> int:
    """Print the effective configuration (unless show_config=False), then the findings.

    `name` is how the file is called in the last line (default: its path).
    """
    if show_config:
        out.write(render_config(config))
    found = findings(config)
    for note in found.notes:
        print(f"ok: {note}", file=out)
    for warning in found.warnings:
        print(f"WARNING: {warning}", file=out)
    for problem in found.problems:
        print(f"PROBLEM: {problem}", file=out)
    name = name or str(config.file)
    if found.problems:
        raise ConfigError(f"{name}: {len(found.problems)} problem(s) found by the checks above")
    print(f"; {name}: configuration OK", file=out)
    return EXIT_OK
