"""SIGKILL of the agent itself mid-dump (a private MariaDB started by the fixtures).

The source's own tests cover a killed mariadb-dump, a killed server, SIGTERM
and a full disk mid-dump (tests/engines/mysql/test_mysql_backup.py). What only a crash of
the agent can show: its dump child must not live on holding a connection (and
a long read view) on the tracker's server, nothing is published, and the next
run succeeds.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest

from faults.harness import Host, assert_published_are_complete, fingerprints, make_host, wait_for
from support import mariadb as mariadb_support

pytestmark = pytest.mark.mysql
mariadb_server = mariadb_support.mariadb_server
USER = "tb_faults"


def _dump_pids(socket) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read()
        except OSError:
            continue
        if (b"mariadb-dump" in argv or b"mysqldump" in argv) and str(socket).encode() in argv:
            found.append(int(pid))
    return found


def _mysql_host(tmp_path, server, *grants: str, mysql: str = "") -> tuple[Host, str]:
    """A host backing up only a new 100,000-torrent database on `server`, as a user with
    the dump's grants on it and `grants`; (the host, the database's name)."""
    name = f"tf_{secrets.token_hex(4)}"
    server.create_tracker_db(name, rows=100_000)
    password = secrets.token_hex(12)
    server.create_user(USER, password, [f"SELECT, SHOW VIEW, TRIGGER ON `{name}`.*", *grants])
    pw = tmp_path / "mysql.password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    host = make_host(tmp_path, files=False)
    host.settings.pop("sqlite")
    host.write_config(mysql=f"database = {name}\nsocket = {server.socket}\nuser = {USER}\n"
                            f"password_file = {pw}{mysql}")
    return host, name


def test_sigkill_of_the_agent_mid_dump_leaves_no_dump_running_and_publishes_nothing(
        tmp_path, mariadb_server):
    server = mariadb_server
    host, name = _mysql_host(tmp_path, server)
    host.cli("run", check=True)
    before = fingerprints(host)
    invariant = server.invariant(name)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 1")
    proc = host.start()
    wait_for(lambda: _dump_pids(server.socket), what="mariadb-dump", proc=proc)
    time.sleep(0.5)  # well into the dump
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -9
    # The orphaned dump finds its reader gone (EPIPE/SIGPIPE) and ends with its connection.
    wait_for(lambda: not _dump_pids(server.socket), timeout=30, what="the orphaned dump to exit")
    assert {p.name for p in host.snapshots()} == set(before)
    assert server.invariant(name) == invariant  # the live database is untouched
    host.write_config(backup=f"path = {host.backups}")
    again = host.cli("run", "--no-prune")
    assert again.returncode == 0, again.stderr
    assert host.debris() == []
    assert_published_are_complete(host)


def test_scratch_database_of_a_killed_restore_check_is_dropped_by_the_next_run(
        tmp_path, mariadb_server):
    server = mariadb_server
    host, _name = _mysql_host(tmp_path, server, "ALL PRIVILEGES ON `tracker\\_backup\\_verify\\_%`.*",
                              mysql="\nverify = restore")

    def scratch() -> list[str]:
        return [d for d in server.databases() if d.startswith("tracker_backup_verify_")]

    assert scratch() == []
    proc = host.start()
    wait_for(scratch, what="the scratch database of the restore check", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -9
    time.sleep(0.5)  # the orphaned client sees end of input and exits
    left = scratch()
    assert left, "the kill should have left the scratch database behind"
    again = host.cli("run", "--no-prune")
    assert again.returncode == 0, again.stderr
    assert "left by an interrupted run" in again.stderr and left[0] in again.stderr
    assert scratch() == [], "a whole copy of the tracker database stays on its server"
    assert_published_are_complete(host)
