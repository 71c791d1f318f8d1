"""`tracker-backup init`: a working config from the deployment as it is on disk.

Reads tracker.toml, .env and the compose file (tracker_backup.deployment), prints a
commented configuration (or writes it with --write: mode 0600, never over an existing
file without --force), puts the MySQL password in its own 0600 file, then runs
check-config on the result.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from tracker_backup import deployment
from tracker_backup.artifacts import fsync_dir
from tracker_backup.commands.check_config import check_config
from tracker_backup.config import default_config_path, load_config
from tracker_backup.errors import ConfigError, UsageError

PASSWORD_FILE_NAME = "mysql.password"
DEFAULT_BACKUP_PATH = Path("/var/backups/tracker-backup")


def register(subparsers) -> None:
    """Add the `init` subcommand (it runs without a configuration file)."""
    p = subparsers.add_parser(
        "init", help="write a configuration for the deployment found on this host",
        description="Read the Torrust deployment (tracker.toml, docker-compose.yml, .env), "
                    "print a commented configuration for it (or write it with --write), "
                    "then check it like check-config.")
    p.add_argument("--storage", type=Path, default=deployment.DEFAULT_STORAGE,
                   help=f"the deployment's storage directory (default: "
                        f"{deployment.DEFAULT_STORAGE}); the compose file and .env are "
                        "looked for in its parent")
    p.add_argument("--backup-path", type=Path, default=DEFAULT_BACKUP_PATH,
                   help=f"[backup] path of the new configuration (default: {DEFAULT_BACKUP_PATH})")
    p.add_argument("--write", action="store_true",
                   help="write the configuration to --config (default "
                        f"{default_config_path()}), mode 0600, and a MySQL password beside it")
    p.add_argument("--force", action="store_true",
                   help="with --write: replace an existing configuration file")
    p.set_defaults(handler=_handler, needs_config=False)


def _handler(args: argparse.Namespace, config: None, out) -> int:
    del config  # init makes the configuration; it never reads one
    if args.force and not args.write:
        raise UsageError("--force only applies with --write")
    if not args.backup_path.is_absolute():
        raise UsageError(f"--backup-path {args.backup_path}: expected an absolute path")
    return init(storage=args.storage, config_path=args.config or default_config_path(),
                write=args.write, force=args.force, backup_path=args.backup_path, out=out)


def write_private(path: Path, text: str, *, force: bool) -> None:
    """Write `text` to `path` as a new 0600 file, published by rename (never half-written).

    Refuses an existing file unless `force`; the directory is created 0700 if missing.
    """
    if path.exists() and not force:
        raise UsageError(f"{path} exists: not overwriting it (use --force to replace it)")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created it meanwhile: never clobber
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def init(*, storage: Path, config_path: Path, write: bool, force: bool,
         backup_path: Path = DEFAULT_BACKUP_PATH, out=None, err=None) -> int:
    """Read the deployment, print or write the config, then check it like check-config.

    Without --write the config goes to stdout and the check report to stderr (so
    `init > file` gives a clean file); with --write both reports go to stdout.
    Returns check-config's exit status.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    dep = deployment.read_deployment(storage)
    password_file = config_path.parent / PASSWORD_FILE_NAME if dep.mysql else None
    text = deployment.render_config(dep, backup_path=backup_path, password_file=password_file)
    if write:
        if config_path.exists() and not force:
            raise UsageError(f"{config_path} exists: not overwriting it (use --force to replace "
                             "it, or run without --write to print the new one)")
        if dep.mysql is not None and password_file is not None:
            write_private(password_file, dep.mysql.password + "\n", force=True)
            print(f"wrote {password_file} (mode 0600): the MySQL password", file=out)
        write_private(config_path, text, force=force)
        print(f"wrote {config_path} (mode 0600); checking it:", file=out)
        return check_config(load_config(config_path), out, show_config=False)
    out.write(text)
    out.flush()
    # Check exactly what was printed, from a private scratch copy (and password file).
    with tempfile.TemporaryDirectory(prefix="tracker-backup-init-") as scratch:
        scratch_conf = Path(scratch) / config_path.name
        scratch_text = text
        if dep.mysql is not None and password_file is not None:
            scratch_pw = Path(scratch) / PASSWORD_FILE_NAME
            write_private(scratch_pw, dep.mysql.password + "\n", force=False)
            scratch_text = text.replace(f"password_file = {password_file}",
                                        f"password_file = {scratch_pw}")
        write_private(scratch_conf, scratch_text, force=False)
        print(f"; checking the configuration above (not written: use --write to write it to "
              f"{config_path})", file=err)
        try:
            return check_config(load_config(scratch_conf), err, show_config=False,
                                name="the configuration above")
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(scratch_conf), "the configuration above")
                              ) from None

