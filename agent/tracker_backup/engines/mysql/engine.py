"""The MySQL/MariaDB engine: the contract (engines/contract.py) over this folder's modules."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tracker_backup.engines import contract
from tracker_backup.engines.mysql import client as mysql_client
from tracker_backup.engines.mysql import config as mysql_config
from tracker_backup.engines.mysql.docker_sandbox import docker_needs
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.preflight import Findings

if TYPE_CHECKING:
    from tracker_backup.artifacts import Artifact
    from tracker_backup.config import Config, Section
    from tracker_backup.store import Snapshot

# Any one of these in a directory marks it as a MySQL/MariaDB data directory.
DATADIR_MARKERS = ("ibdata1", "mysql.ibd", "aria_log_control", "ib_logfile0", "#innodb_redo")


def is_mysql_datadir(path: Path) -> bool:
    """True if the directory holds MySQL/MariaDB data files."""
    return any((path / marker).exists() for marker in DATADIR_MARKERS)


class MysqlEngine(contract.Engine):
    """A MySQL/MariaDB database dumped hot with mysqldump: [mysql]."""

    kind = "mysql"

    def parse_section(self, section: Section) -> mysql_config.MysqlConfig:
        return mysql_config.parse_section(section)

    def preflight(self, config: Config) -> Findings:
        from tracker_backup.engines.mysql.preflight import preflight
        from tracker_backup.engines.mysql.server import MysqlServer

        return Findings(problems=preflight(MysqlServer(config.section(self.kind))))

    def backup(self, config: Config, ctx: contract.RunContext) -> contract.SourceResult:
        from tracker_backup.engines.mysql.backup import MysqlBackup

        return MysqlBackup(config.section(self.kind)).backup(ctx)

    def raw_copy_hazard(self, path: Path, is_dir: bool) -> str | None:
        # Raw InnoDB files copied under a running server are useless.
        if is_dir and is_mysql_datadir(path):
            return "live MySQL/MariaDB data directory (backed up by [mysql], never as raw files)"
        return None

    def verify_stored(self, snapshot_dir: Path, entry: dict, artifacts: list[Artifact],
                      level: str, scratch: Path) -> list[str]:
        from tracker_backup.engines.mysql.verify import verify_stored

        return verify_stored(snapshot_dir, entry, artifacts, level, scratch)

    def restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--database", metavar="NAME",
                            help="mysql: the database to load into, created if missing "
                                 "(default: [mysql] database)")
        parser.add_argument("--mysql-user", metavar="USER",
                            help="mysql: account to restore with (default: [mysql] user; the "
                                 "backup account usually may only read)")
        parser.add_argument("--mysql-password-file", type=Path, metavar="FILE",
                            help="mysql: that account's password file (mode 0600; never on the "
                                 "command line)")

    def check_restore_args(self, args: argparse.Namespace, selected: bool) -> None:
        if selected and args.to is not None:
            raise UsageError("--to does not apply to mysql: use --database NAME")
        if not selected and (args.database or args.mysql_user or args.mysql_password_file):
            raise UsageError("--database, --mysql-user and --mysql-password-file apply to "
                             "mysql only")

    def plan_restore(self, config: Config, snap: Snapshot, part: contract.Part,
                     args: argparse.Namespace) -> contract.RestoreStep:
        from tracker_backup.engines.mysql import restore
        from tracker_backup.restore_plan import artifact_path

        cfg = config.section(self.kind)
        if cfg is None:
            raise UsageError("no [mysql] section configured: the restore needs its connection "
                             "settings (socket/host, user, password_file, exec_prefix)")
        cfg = restore.with_account(cfg, args.mysql_user, args.mysql_password_file)
        name = args.database or cfg.database
        src = artifact_path(snap, part.artifacts[0])
        return contract.RestoreStep(part, restore.plan(part, cfg, name),
                           lambda ctx: restore.restore(src, part, cfg, name))

    def drill(self, config: Config, snap: Snapshot, part: contract.Part,
              scratch: Path) -> contract.DrillResult:
        from tracker_backup.engines.mysql import restore
        from tracker_backup.restore_plan import artifact_path

        cfg = config.section(self.kind)
        if cfg is None:
            raise RunFailed("mysql: no [mysql] section configured: cannot load the dump into a "
                            "scratch database")
        return restore.drill(artifact_path(snap, part.artifacts[0]), part, cfg)

    # -- continuous archive (the binlog: engines/mysql/binlog/) ------------------------
    def archiver(self, config: Config):
        """The binlog archiver when `[mysql] continuous = yes`."""
        cfg = config.section(self.kind)
        if cfg is None or not cfg.continuous:
            return None
        from tracker_backup.engines.mysql.binlog.archiver import BinlogArchiver

        return BinlogArchiver(cfg, config.backup.path)

    def plan_restore_at(self, config: Config, at: str, to: Path | None,
                        args: argparse.Namespace | None = None) -> contract.RestoreStep:
        from tracker_backup.engines.mysql.binlog import steps

        if to is not None:
            raise UsageError("--to does not apply to mysql: use --database NAME")
        return steps.plan_restore_at(config, at, args)

    def archive_report(self, config: Config, snapshots: list[Snapshot]) -> dict | None:
        from tracker_backup.engines.mysql.binlog import steps

        return steps.report(config, snapshots)

    def archive_prune(self, config: Config, kept: list[Snapshot], dry_run: bool) -> list[str]:
        from tracker_backup.engines.mysql.binlog import steps

        return steps.prune(config, kept, dry_run)

    def archive_drill(self, config: Config, scratch: Path) -> dict | None:
        from tracker_backup.engines.mysql.binlog import steps

        del scratch  # a scratch database, not a directory
        return steps.drill_at(config)

    def sandbox(self, config: Config) -> contract.SandboxNeeds:
        cfg = config.section(self.kind)
        needs = contract.SandboxNeeds()
        if cfg.socket is not None:
            needs.read.append(cfg.socket.parent)
        if cfg.password_file is not None:
            needs.read.append(cfg.password_file)  # read directly (the file stays readable)
        elif mysql_client.DEFAULT_PASSWORD_FILE.is_file():
            # Handed over as a credential: $CREDENTIALS_DIRECTORY/mysql-password.
            needs.credentials[mysql_client.CREDENTIAL_NAME] = mysql_client.DEFAULT_PASSWORD_FILE
        if cfg.host:
            needs.network_hosts.append(cfg.host)
        # The docker client of exec_prefix: its config dir, files, socket or TCP engine.
        docker = docker_needs(cfg.exec_prefix)
        needs.home_read += docker.home_paths
        needs.network_hosts += docker.network_hosts
        return needs
