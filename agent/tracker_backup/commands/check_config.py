"""`tracker-backup check-config`: print the effective configuration, then look at what it names.

Each configured engine looks at its source (SQLite: the file read-only; MySQL: the account
and its privileges), the backup path is probed (a file created and removed in it), and
its free space is compared with what the next run needs (space.py). Problems fail the
command (exit 2); warnings and notes are printed.
"""

from __future__ import annotations

import argparse

from tracker_backup import engines
from tracker_backup.config import Config, render_config
from tracker_backup.errors import EXIT_OK, ConfigError
from tracker_backup.preflight import Findings, check_backup_path
from tracker_backup.space import space_report


def register(subparsers) -> None:
    """Add the `check-config` subcommand."""
    c = subparsers.add_parser(
        "check-config", help="validate the configuration, print it, and look at the database "
                             "and the backup path")
    c.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    return check_config(config, out)


def findings(config: Config) -> Findings:
    """Everything check-config looks at, beyond the syntax."""
    found = Findings()
    for engine in engines.configured(config):
        found.extend(engine.preflight(config), prefix=f"[{engine.kind}] ")
    found.extend(check_backup_path(config.backup.path,
                                   require_mountpoint=config.backup.require_mountpoint))
    space = space_report(config)
    found.notes.append(space.line())
    if space.short:
        # The need is an estimate with headroom (space.py): said loudly, not a hard failure.
        found.warnings.append(f"[backup] path = {config.backup.path}: not enough free space "
                              "for the next run (see the free space line above)")
    return found


def check_config(config: Config, out, *, show_config: bool = True, name: str | None = None) -> int:
    """Print the effective configuration (unless show_config=False), then the findings.

    `name` is how the file is called in the last line (default: its path).
    """
    if show_config:
        out.write(render_config(config))
    found = findings(config)
    for note in found.notes:
        print(f"; {note}", file=out)
    for warning in found.warnings:
        print(f"WARNING: {warning}", file=out)
    for problem in found.problems:
        print(f"PROBLEM: {problem}", file=out)
    name = name or str(config.file)
    if found.problems:
        raise ConfigError(f"{name}: {len(found.problems)} problem(s) found by the checks above")
    print(f"; {name}: configuration OK", file=out)
    return EXIT_OK
