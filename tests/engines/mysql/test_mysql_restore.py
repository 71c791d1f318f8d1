"""MySQL restore against a private MariaDB server: round trip under a live writer, the
credential path (no password in argv or environment, through an exec_prefix), and the
drill's scratch database. (MySQL 8 cannot run here; MariaDB 10.11 does. Through a real Docker engine: tests/docker/.)"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from support import mariadb as mariadb_support
from support.mariadb import MariaDB
from support.mysql_writer import START_NEW
from tracker_backup.errors import EXIT_OK

pytestmark = pytest.mark.mysql
mariadb_server = mariadb_support.mariadb_server

PASSWORD = f"r\"e\\s#1 'x;$(id)-{secrets.token_hex(6)}"
ADMIN_PASSWORD = f"adm'n\"{secrets.token_hex(6)}"


def setup_db(server: MariaDB, tmp_path: Path, rows: int, mysql_extra: str = "") -> tuple[str, Path]:
    """A tracker database, a backup account, a restore account, and a config using them."""
    db = f"tr_{secrets.token_hex(4)}"
    tag = secrets.token_hex(3)
    server.create_tracker_db(db, rows=rows)
    server.create_user(f"bk_{tag}", PASSWORD, [
        f"SELECT, SHOW VIEW, TRIGGER ON `{db}`.*",
        "ALL PRIVILEGES ON `tracker\\_backup\\_verify\\_%`.*"])
    server.create_user(f"rs_{tag}", ADMIN_PASSWORD, [f"ALL PRIVILEGES ON `{db}\\_%`.*",
                                                     f"SELECT ON `{db}`.*"])
    for name, secret in (("backup.pw", PASSWORD), ("restore.pw", ADMIN_PASSWORD)):
        (tmp_path / name).write_text(secret + "\n")
        os.chmod(tmp_path / name, 0o600)
    conf = tmp_path / "tb.conf"
    conf.write_text(f"""
[backup]
path = {tmp_path / "backups"}
[mysql]
database = {db}
socket = {server.socket}
user = bk_{tag}
password_file = {tmp_path / "backup.pw"}
{mysql_extra}
""")
    return db, conf


def restore_args(tmp_path: Path, conf: Path, target: str) -> list[str]:
    user = next(line.split("= ")[1] for line in conf.read_text().splitlines()
                if line.startswith("user")).replace("bk_", "rs_")
    return ["restore", "--kind", "mysql", "--database", target, "--mysql-user", user,
            "--mysql-password-file", str(tmp_path / "restore.pw")]


def test_mysql_round_trip_under_a_live_writer_keeps_every_committed_row(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db, conf = setup_db(server, tmp_path, rows=20_000)
    cli = fresh_cli(conf)
    writer = server.start_writer(db, tmp_path / "writer.json", rate=300, existing=20_000)
    try:
        committed_before = writer.mark()["last_new_committed"]
        assert committed_before >= START_NEW
        snap_id = cli("run", check=True).stdout.strip()
    finally:
        writer.stop()
    target = f"{db}_restored"
    proc = cli(*restore_args(tmp_path, conf, target), check=True)
    assert f"mysql -> database {target}" in proc.stdout.splitlines()[-1]
    total, metric = server.invariant(target)
    assert total == metric
    present = int(server.value(
        f"SELECT COUNT(*) FROM torrents WHERE info_hash BETWEEN '{START_NEW:040x}' "
        f"AND '{committed_before:040x}'", target))
    assert present == committed_before - START_NEW + 1
    manifest = json.loads((tmp_path / "backups" / snap_id / "MANIFEST.json").read_text())
    for table, count in manifest["sources"]["mysql"]["row_counts"].items():
        assert int(server.value(f"SELECT COUNT(*) FROM `{table}`", target)) == count

    # Again over the now existing database: the plan names the tables it replaces.
    server.sql("CREATE TABLE extra (id INT)", target)
    server.sql("DELETE FROM torrents WHERE id < 100", target)
    dry = cli(*restore_args(tmp_path, conf, target), "--dry-run", check=True)
    assert f"will replace: table {target}.torrents (dropped, re-created" in dry.stdout
    assert "left as they are (not in the dump): extra" in dry.stdout
    cli(*restore_args(tmp_path, conf, target), check=True)
    assert int(server.value("SELECT COUNT(*) FROM torrents", target)) == \
        manifest["sources"]["mysql"]["row_counts"]["torrents"]
    server.sql(f"DROP DATABASE `{db}`; DROP DATABASE `{target}`;")


def test_mysql_restore_through_exec_prefix_never_shows_the_password(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    spy_dir = Path(tempfile.mkdtemp(prefix="tb-restore-spy-"))
    try:
        os.chmod(spy_dir, 0o777)
        spy = spy_dir / "spy.sh"
        spy.write_text(f'#!/bin/sh\n{{ id -un; echo "$@"; env; }} >> {spy_dir}/calls.log\n'
                       'exec "$@"\n')
        os.chmod(spy, 0o755)
        prefix = f"setpriv --reuid=nobody --regid=nogroup --clear-groups {spy}"
        db, conf = setup_db(server, tmp_path, rows=500, mysql_extra=f"exec_prefix = {prefix}")
        cli = fresh_cli(conf)
        cli("run", check=True)
        target = f"{db}_viaprefix"
        cli(*restore_args(tmp_path, conf, target), check=True)
        calls = (spy_dir / "calls.log").read_text()
    finally:
        shutil.rmtree(spy_dir, ignore_errors=True)
    assert "mariadb --defaults-extra-file=/dev/fd/3" in calls and f"--database={target}" in calls
    assert "nobody" in calls
    assert PASSWORD not in calls and ADMIN_PASSWORD not in calls
    assert int(server.value("SELECT COUNT(*) FROM torrents", target)) == 500
    server.sql(f"DROP DATABASE `{db}`; DROP DATABASE `{target}`;")


def test_drill_loads_the_dump_into_a_scratch_database_and_drops_it(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db, conf = setup_db(server, tmp_path, rows=3000)
    cli = fresh_cli(conf)
    cli("run", check=True)
    proc = cli("drill", "--json")
    assert proc.returncode == EXIT_OK, proc.stderr
    result = json.loads(proc.stdout)
    assert result["kinds"] == ["mysql"]
    assert result["details"]["mysql"]["row_counts"]["torrents"] == 3000
    assert result["details"]["mysql"]["scratch_database"].startswith("tracker_backup_verify_")
    assert not [d for d in server.databases() if d.startswith("tracker_backup_verify_")]
    server.sql(f"DROP DATABASE `{db}`")
