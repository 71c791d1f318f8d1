"""Fixtures of the Docker suite: a real dockerd started here, a deployer-layout compose project.

The engine is started once per session (tests/support/docker_engine.py); the
tests are skipped, with the reason, only when dockerd cannot start on this
machine. Each module gets one deployment (mysql + tracker services) to keep
the number of containers low on the shared CPUs.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Cli, agent_env
from support.deployment import BACKUP_USER, DATABASE, Deployment
from support.docker_engine import DockerEngine, EngineUnavailable

pytestmark = pytest.mark.docker
RESTORE_USER = "tb_restore"


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd (own network namespace) for the whole session."""
    try:
        engine = DockerEngine.start()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine can start here: {exc}")
    try:
        engine.ensure_image()
        yield engine
    finally:
        engine.stop()


class Agent(Cli):
    """The real CLI on the host, talking to the deployment through exec_prefix."""

    def __init__(self, engine: DockerEngine, config: Path):
        super().__init__(config, timeout=600, env=agent_env(DOCKER_HOST=engine.env["DOCKER_HOST"],
                                                            DOCKER_CONFIG=engine.env["DOCKER_CONFIG"]))


class Host:
    """A deployer host: /opt/torrust with its compose project, and the agent configured for it."""

    def __init__(self, engine: DockerEngine, base: Path, **deployment_args):
        self.base = base
        self.dep = Deployment(engine, base, **deployment_args)
        self.password = "agent-" + secrets.token_hex(12)  # what must never show anywhere
        self.etc = base / "etc/tracker-backup"
        self.etc.mkdir(parents=True)
        self.password_file = self.etc / "mysql.password"
        self.password_file.write_text(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        # An account that may write, for restores (the backup account only reads production).
        self.restore_password = "restore-" + secrets.token_hex(12)
        self.restore_password_file = self.etc / "mysql-restore.password"
        self.restore_password_file.write_text(self.restore_password + "\n")
        os.chmod(self.restore_password_file, 0o600)
        self.backups = base / "var/backups/tracker-backup"
        self.backups.parent.mkdir(parents=True)
        self.config = self.etc / "tracker-backup.conf"
        self.write_config()
        self.agent = Agent(engine, self.config)

    def write_config(self, backup: str = "", mysql: str = "") -> None:
        self.config.write_text(f"""
[backup]
path = {self.backups}
{backup}
[sqlite]
database = {self.dep.db}
[mysql]
database = {DATABASE}
user = {BACKUP_USER}
password_file = {self.password_file}
exec_prefix = {self.dep.exec_prefix}
{mysql}
[files]
root = {self.dep.storage}
include = tracker/etc/** caddy/etc/**
""")

    def start(self, torrents: int = 3000) -> Host:
        self.dep.up()
        self.dep.setup_accounts(self.password, torrents=torrents)
        self.dep.create_user(RESTORE_USER, self.restore_password, ["ALL ON *.*"])
        return self

    def restore_args(self) -> list[str]:
        """restore's options naming the writing account."""
        return ["--mysql-user", RESTORE_USER, "--mysql-password-file", str(self.restore_password_file)]

    def snapshots(self) -> list[str]:
        if not self.backups.exists():
            return []
        return sorted(p.name for p in self.backups.iterdir() if p.name[:1].isdigit())


@pytest.fixture(scope="module")
def host(docker_engine, request) -> Iterator[Host]:
    """One deployment per module, started, with the tracker writing SQLite as uid 1000.

    A module's TORRENTS (default 3000) sizes the MySQL database; LOG_BIN = False starts
    the server without binary logging (MariaDB's default).
    """
    base = Path(tempfile.mkdtemp(prefix="tbh-", dir="/tmp"))  # short: socket paths inside
    h = Host(docker_engine, base, log_bin=getattr(request.module, "LOG_BIN", True))
    try:
        h.start(torrents=getattr(request.module, "TORRENTS", 3000))
        yield h
    finally:
        h.dep.remove()
