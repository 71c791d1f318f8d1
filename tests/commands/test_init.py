"""`tracker-backup init` on the deployer's layouts: print or write a config that works."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conftest import agent_env
from support.deployer_layout import make_layout
from support.mariadb import MariaDB
from tracker_backup.errors import EXIT_OK, EXIT_USAGE


@pytest.fixture
def tcp_mariadb():
    """A private MariaDB on 127.0.0.1 (the URL's host is no compose service: TCP)."""
    server = MariaDB.start(tcp=True)
    yield server
    server.stop()


def init(*args: str, config) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tracker_backup", "--config", str(config), "init", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=agent_env())


def test_init_prints_a_config_that_passes_check_config_without_writing_anything(tmp_path):
    layout = make_layout(tmp_path / "opt/torrust")
    conf = tmp_path / "etc/tracker-backup.conf"
    proc = init("--storage", str(layout.storage), config=conf)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert f"database = {layout.database}" in proc.stdout
    assert "caddy/data/**" in proc.stdout
    assert "configuration OK" in proc.stderr and "not written" in proc.stderr
    assert not conf.parent.exists()


def test_init_write_creates_a_0600_config_the_agent_backs_up_with(tmp_path, fresh_cli):
    layout = make_layout(tmp_path / "opt/torrust")
    conf = tmp_path / "etc/tracker-backup.conf"
    proc = init("--storage", str(layout.storage), "--write", "--backup-path",
                str(tmp_path / "backups"), config=conf)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert f"wrote {conf}" in proc.stdout and "configuration OK" in proc.stdout
    cli = fresh_cli(conf)
    snap_id = cli("run", check=True).stdout.strip()
    assert (tmp_path / "backups" / snap_id / "files.tar.zst").is_file()
    listing = subprocess.run(f"zstd -dc {tmp_path / 'backups' / snap_id / 'files.tar.zst'} | tar -tf -",
                             shell=True, capture_output=True, text=True, check=True).stdout
    assert "caddy/data/caddy/certificates/acme/tracker.example.org.key" in listing
    # An existing config is never overwritten without --force.
    conf.write_text("; mine\n")
    again = init("--storage", str(layout.storage), "--write", config=conf)
    assert again.returncode == EXIT_USAGE and "--force" in again.stderr
    assert conf.read_text() == "; mine\n"


def test_init_on_a_mysql_layout_puts_the_password_in_a_0600_file_and_checks_the_account(
        tmp_path, tcp_mariadb):
    server = tcp_mariadb
    server.create_tracker_db("torrust_tracker", rows=100)
    server.create_user("torrust", "s3cret!pw", ["ALL PRIVILEGES ON torrust_tracker.*"],
                       host="127.0.0.1")
    layout = make_layout(tmp_path / "opt/torrust", driver="mysql",
                         mysql_url=f"mysql://torrust:s3cret%21pw@127.0.0.1:{server.port}/"
                                   "torrust_tracker")
    conf = tmp_path / "etc/tracker-backup.conf"
    proc = init("--storage", str(layout.storage), "--write", "--backup-path",
                str(tmp_path / "backups"), config=conf)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    password_file = conf.parent / "mysql.password"
    assert password_file.read_text() == "s3cret!pw\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    text = conf.read_text()
    assert "s3cret" not in text and f"password_file = {password_file}" in text
    assert f"port = {server.port}" in text and "configuration OK" in proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr


def test_init_on_the_compose_mysql_layout_uses_the_container_and_reports_a_failed_check(
        tmp_path):
    layout = make_layout(tmp_path / "opt/torrust", driver="mysql")
    conf = tmp_path / "etc/tracker-backup.conf"
    env = agent_env(PATH=f"{tmp_path}/nodocker:/usr/bin:/bin")  # no docker on PATH
    proc = subprocess.run([sys.executable, "-m", "tracker_backup", "--config", str(conf),
                           "init", "--storage", str(layout.storage)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert f"exec_prefix = docker compose -f {layout.compose} exec -T mysql" in proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr
    assert proc.returncode == EXIT_USAGE and "PROBLEM: [mysql]" in proc.stderr
    assert not os.path.exists(conf)
