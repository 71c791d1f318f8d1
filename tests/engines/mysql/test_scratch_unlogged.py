"""Drills into a scratch database on the production server stay out of its binary log when
the account may (`SET SESSION sql_log_bin=0`), and fall back to logged loads with a
warning when it may not. Against the private MariaDB 10.11 (binary log on)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import pytest

from support import mariadb as mariadb_support
from support.mariadb import MariaDB
from support.polling import wait_for
from tracker_backup.errors import EXIT_OK

pytestmark = pytest.mark.mysql
mariadb_server = mariadb_support.mariadb_server
WARNING = "may not SET sql_log_bin"


def tracker_and_account(server: MariaDB, tmp_path: Path, rows: int, grants: list[str], extra: str = "") -> tuple[str, str, Path]:
    """A tracker database, a backup account with `grants` on top of the drill's, a config."""
    db, user = f"tr_{secrets.token_hex(4)}", f"bk_{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_hex(8)
    server.create_tracker_db(db, rows=rows)
    server.create_user(user, password, [f"SELECT, SHOW VIEW, TRIGGER ON `{db}`.*",
                                        "ALL PRIVILEGES ON `tracker\\_backup\\_verify\\_%`.*", *grants])
    (tmp_path / "pw").write_text(password + "\n")
    os.chmod(tmp_path / "pw", 0o600)
    conf = tmp_path / "tb.conf"
    conf.write_text(f"[backup]\npath = {tmp_path / 'backups'}\n[mysql]\ndatabase = {db}\n"
                    f"socket = {server.socket}\nuser = {user}\npassword_file = {tmp_path / 'pw'}\n{extra}")
    return db, user, conf


def binlog_bytes(server: MariaDB) -> int:
    """Everything the server has written to its binary logs so far."""
    return sum(int(row[1]) for row in server.sql("SHOW BINARY LOGS"))


def test_the_drills_load_is_logged_with_a_warning_until_the_account_may_set_sql_log_bin(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db, user, conf = tracker_and_account(server, tmp_path, rows=20000, grants=[])
    cli = fresh_cli(conf)
    cli("run", check=True)

    before = binlog_bytes(server)
    logged = cli("drill", "--json")
    assert logged.returncode == EXIT_OK, logged.stderr
    grew_logged = binlog_bytes(server) - before
    assert WARNING in logged.stderr and "GRANT BINLOG ADMIN ON *.*" in logged.stderr, logged.stderr
    assert grew_logged > 500_000  # the whole 20,000-row load went into the binlog

    server.sql(f"GRANT BINLOG ADMIN ON *.* TO '{user}'@'localhost'")
    before = binlog_bytes(server)
    unlogged = cli("drill", "--json")
    assert unlogged.returncode == EXIT_OK, unlogged.stderr
    grew_unlogged = binlog_bytes(server) - before
    assert WARNING not in unlogged.stderr, unlogged.stderr
    result = json.loads(unlogged.stdout)
    assert result["details"]["mysql"]["row_counts"]["torrents"] == 20000
    assert grew_unlogged == 0, grew_unlogged  # nor the CREATE/DROP DATABASE
    print(f"binlog bytes written by a 20,000-row drill: logged {grew_logged}, unlogged {grew_unlogged}")
    assert not [d for d in server.databases() if d.startswith("tracker_backup_verify_")]
    server.sql(f"DROP DATABASE `{db}`")


def test_the_archive_drill_replays_into_its_scratch_database_out_of_the_binlog(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db, user, conf = tracker_and_account(server, tmp_path, rows=5000, extra="continuous = yes\n", grants=[
        "REPLICATION SLAVE, BINLOG MONITOR, BINLOG REPLAY ON *.*"])
    cli = fresh_cli(conf)
    # check-config says the drills would be logged, and what to grant; then it is quiet.
    check = cli("check-config")
    assert check.returncode == EXIT_OK and WARNING in check.stderr, check.stderr
    assert "GRANT BINLOG ADMIN ON *.*" in check.stderr, check.stderr
    server.sql(f"GRANT BINLOG ADMIN ON *.* TO '{user}'@'localhost'")
    check = cli("check-config")
    assert check.returncode == EXIT_OK and WARNING not in check.stderr, check.stderr
    cli("run", check=True)
    archiver = cli.popen("archive")
    try:
        # Commits after the dump: the archive drill replays them into its scratch database.
        for n in range(20):
            server.sql(f"INSERT INTO torrents (info_hash, completed) VALUES "
                       f"('{mariadb_support.info_hash(9 * 10**12 + n)}', 1)", db)
        status = tmp_path / "backups/archive/mysql/status.json"

        def archive_status() -> dict:
            return json.loads(status.read_text()) if status.exists() else {}

        wait_for(lambda: (st := archive_status()).get("streaming") and st.get("bytes_behind") == 0, 60,
                 "the archiver to catch up", interval=0.3, proc=archiver, diagnose=archive_status)
        time.sleep(1.5)  # the newest commits published (every 0.5 s)
    finally:
        archiver.send_signal(signal.SIGTERM)
        _out, err = archiver.communicate(timeout=60)
    assert archiver.returncode == 0, err
    before = binlog_bytes(server)
    proc = cli("drill", "--json")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert WARNING not in proc.stderr, proc.stderr
    arch = json.loads(proc.stdout)["details"]["mysql-archive"]
    assert arch["unlogged"] is True and "CHECK TABLE ok" in arch["summary"], arch
    assert binlog_bytes(server) == before  # dump load, replay, CREATE/DROP: none logged
    server.sql(f"DROP DATABASE `{db}`")
