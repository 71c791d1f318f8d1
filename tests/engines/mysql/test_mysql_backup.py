"""[mysql] end to end against a real private MariaDB server, through the CLI as operators use it.

The server is MariaDB 10.11 from Debian, started by the fixtures in
tests/support/mariadb.py. MySQL 8 cannot run here: its flag spelling is
covered by test_mysql_dump.py only. The docker compose exec_prefix runs for real
against a private Docker engine in tests/docker/; here its command line's shape is checked, while
exec_prefix itself is exercised for real by a prefix that runs the client
tools as another user in another network namespace.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pymysql
import pytest
import zstandard

from conftest import agent_env
from support import backup_dir
from support import mariadb as mariadb_support
from support.backup_dir import read_manifest
from support.mariadb import MariaDB
from support.mysql_writer import START_NEW
from support.polling import wait_for
from tracker_backup.config import load_config
from tracker_backup.engines.mysql.client import WRAPPER, MysqlClient

pytestmark = pytest.mark.mysql
# The shared fixtures (a session server, and a per-test one for tests that kill it).
mariadb_server = mariadb_support.mariadb_server
private_mariadb = mariadb_support.private_mariadb

USER = "tracker_backup"
# Unique per session, and made of characters an option file or a shell would mangle.
PASSWORD = f"Pw\"q\\z#1 'x;$(id)-{secrets.token_hex(8)}"
DUMP_GRANT = "SELECT, SHOW VIEW, TRIGGER ON `{db}`.*"
SCRATCH_GRANT = "ALL PRIVILEGES ON `tracker\\_backup\\_verify\\_%`.*"


# -- helpers ---------------------------------------------------------------
def new_db(server: MariaDB, rows: int = 500, *, user: str = USER, password: str = PASSWORD,
           scratch: bool = True) -> str:
    """A fresh tracker database with a unique name, dumpable by `user`."""
    name = f"tt_{secrets.token_hex(4)}"
    server.create_tracker_db(name, rows=rows)
    grants = [DUMP_GRANT.format(db=name)] + ([SCRATCH_GRANT] if scratch else [])
    server.create_user(user, password, grants)
    return name


def write_conf(tmp_path: Path, server: MariaDB, db: str, *, password: str = PASSWORD,
               backup: str = "", mysql: str = "", extra: str = "") -> Path:
    pw = tmp_path / "mysql.password"
    pw.write_text(password + "\n")
    os.chmod(pw, 0o600)
    conf = tmp_path / "tb.conf"
    conf.write_text(f"""
[backup]
path = {tmp_path / "backups"}
{backup}
[mysql]
database = {db}
socket = {server.socket}
user = {USER}
password_file = {pw}
{mysql}
{extra}
""")
    return conf


def published(tmp_path: Path) -> list[Path]:
    return backup_dir.published(tmp_path / "backups")


def staging_left(tmp_path: Path) -> list[str]:
    root = tmp_path / "backups"
    return [p.name for p in root.iterdir() if p.name.startswith(".staging-")] if root.is_dir() else []


def restore_into(server: MariaDB, dump: Path, db: str) -> None:
    """Load a stored dump into a new database with the real client, as an operator would."""
    server.sql(f"DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`;")
    data = dump.read_bytes()
    if dump.suffix == ".zst":
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    proc = subprocess.run(["mariadb", "--no-defaults", f"--socket={server.socket}", db],
                          input=data, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()


def read_proc(pid: str, what: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def wait_for_proc(comm: str, needle: str, timeout: float = 30) -> int:
    """PID of a process named `comm` whose argv contains `needle`."""
    def find() -> int | None:
        return next((int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
                     if read_proc(pid, "comm").strip() == comm.encode()
                     and needle.encode() in read_proc(pid, "cmdline")), None)

    return wait_for(find, timeout, f"a {comm} process with {needle!r}", interval=0.01)


class ProcWatch(threading.Thread):
    """Reads every process's cmdline and environ in a loop, looking for a secret."""

    def __init__(self, secret: str):
        super().__init__(daemon=True)
        self.secret = secret.encode()
        self.leaks: list[str] = []
        self.seen: set[str] = set()
        self.passes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                comm = read_proc(pid, "comm").strip().decode(errors="replace")
                for what in ("cmdline", "environ"):
                    if self.secret in read_proc(pid, what):
                        self.leaks.append(f"{pid} {comm} {what}")
                self.seen.add(comm)
            self.passes += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class LockWatch(threading.Thread):
    """Polls the server for any session waiting on a lock (table, metadata, global, row)."""

    QUERY = ("SELECT CONCAT(ID, ' ', COALESCE(STATE, ''), ' ', COALESCE(INFO, '')) "
             "FROM information_schema.PROCESSLIST WHERE STATE LIKE '%Waiting for%lock%' "
             "UNION ALL SELECT CONCAT('innodb ', requesting_trx_id, ' waits for ', "
             "blocking_trx_id) FROM information_schema.INNODB_LOCK_WAITS")

    def __init__(self, server: MariaDB):
        super().__init__(daemon=True)
        self.conn = pymysql.connect(unix_socket=str(server.socket), user="root")
        self.waits: list[str] = []
        self.polls = 0
        self._halt = threading.Event()

    def run(self) -> None:
        with self.conn.cursor() as cur:
            while not self._halt.wait(0.02):
                cur.execute(self.QUERY)
                self.waits += [r[0] for r in cur.fetchall()]
                self.polls += 1

    def __enter__(self) -> LockWatch:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.conn.close()


# -- the dump under a live writer --------------------------------------------
def test_dump_under_a_live_writer_is_one_consistent_snapshot_with_every_committed_row(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    rows = 300_000
    db = new_db(server, rows=rows)
    cli = fresh_cli(write_conf(tmp_path, server, db))
    writer = server.start_writer(db, tmp_path / "writer.json", rate=300, existing=rows)
    try:
        time.sleep(1.0)
        before = writer.mark()  # closes the idle window
        committed_before = before["last_new_committed"]
        assert committed_before >= START_NEW
        with LockWatch(server) as locks:
            run = cli("run", check=True)
        during = writer.mark()  # closes the window of the run
    finally:
        final = writer.stop()
    snap, = published(tmp_path)
    src = read_manifest(snap)["sources"]["mysql"]
    assert src["method"] == "mysqldump-single-transaction"
    assert src["server_flavour"] == "mariadb" and src["client_flavour"] == "mariadb"
    assert src["binlog"]["file"].startswith("binlog.") and src["binlog"]["position"] > 0
    assert sorted(src["tables"]) == ["keys", "torrent_aggregate_metrics", "torrents", "whitelist"]

    restore_into(server, snap / f"mysql/{db}.sql.zst", f"{db}_restored")
    total, metric = server.invariant(f"{db}_restored")
    assert total == metric, "the dump is torn: sum(completed) differs from the metric"
    n_new = committed_before - START_NEW + 1
    present = int(server.value(
        "SELECT COUNT(*) FROM torrents WHERE info_hash BETWEEN "
        f"'{START_NEW:040x}' AND '{committed_before:040x}'", f"{db}_restored"))
    assert present == n_new, "rows committed before the run are missing from the dump"
    restored_rows = int(server.value("SELECT COUNT(*) FROM torrents", f"{db}_restored"))
    assert restored_rows == src["row_counts"]["torrents"] >= rows + n_new
    # The writer kept committing during the dump, with no lock-wait errors.
    idle, busy = during["windows"][0], during["windows"][1]
    assert busy["ops"] > 0 and final["errors"] == 0, final
    assert locks.polls > 5 and locks.waits == [], locks.waits
    print(f"\nwriter p99 idle {idle['p99_ms']:.2f} ms, during run {busy['p99_ms']:.2f} ms "
          f"(max {busy['max_ms']:.1f} ms); dump {src['dump_seconds']}s, "
          f"{read_manifest(snap)['artifacts'][0]['raw_bytes']} raw bytes, "
          f"{read_manifest(snap)['artifacts'][0]['bytes']} stored; run output {run.stdout.strip()}")
    # And `tracker-backup verify` re-reads the stored dump and agrees with the manifest.
    assert "OK" in cli("verify", check=True).stdout
    server.sql(f"DROP DATABASE `{db}`; DROP DATABASE `{db}_restored`;")


# -- secrets -----------------------------------------------------------------
def test_password_never_appears_in_any_process_argv_environ_logs_or_metadata(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db = new_db(server, rows=60_000)
    # rate_limit stretches the run (about 3 MB at 1.5 MB/s) so the watcher sees the tools.
    conf = write_conf(tmp_path, server, db, backup="rate_limit = 1.5", mysql="verify = restore")
    watch = ProcWatch(PASSWORD)
    watch.start()
    try:
        run = fresh_cli(conf)("-v", "run", check=True)
    finally:
        watch.stop()
    assert watch.leaks == []
    assert {"mariadb-dump", "mariadb"} <= watch.seen, "the watcher never saw the client tools"
    assert watch.passes > 10
    assert PASSWORD not in run.stdout + run.stderr
    snap, = published(tmp_path)
    assert read_manifest(snap)["sources"]["mysql"]["verify"]["result"] == "ok"
    for path in (tmp_path / "backups").rglob("*"):
        if path.is_file() and not path.name.endswith(".sql.zst"):
            assert PASSWORD.encode() not in path.read_bytes(), path
    check = fresh_cli(conf)("-v", "check-config", check=True)
    assert PASSWORD not in check.stdout + check.stderr


def test_a_password_file_readable_by_others_is_refused_and_nothing_is_published(
        tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=10)
    conf = write_conf(tmp_path, mariadb_server, db)
    os.chmod(tmp_path / "mysql.password", 0o644)
    proc = fresh_cli(conf)("run")
    assert proc.returncode == 1
    assert "has mode 0644: expected 0600" in proc.stderr and PASSWORD not in proc.stderr
    assert published(tmp_path) == []


def test_systemd_credential_supplies_the_password(tmp_path, mariadb_server):
    db = new_db(mariadb_server, rows=10)
    conf = write_conf(tmp_path, mariadb_server, db)
    conf.write_text(conf.read_text().replace(f"password_file = {tmp_path / 'mysql.password'}", ""))
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / "mysql-password").write_text(PASSWORD)
    env = agent_env(CREDENTIALS_DIRECTORY=str(creds))
    proc = subprocess.run(["/usr/bin/python3", "-m", "tracker_backup", "--config", str(conf), "run"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(published(tmp_path)) == 1


def test_bad_credentials_fail_the_run_with_the_servers_message(tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=10)
    wrong = "not-the-password-" + secrets.token_hex(4)
    proc = fresh_cli(write_conf(tmp_path, mariadb_server, db, password=wrong))("run")
    assert proc.returncode == 1
    assert "Access denied for user 'tracker_backup'@'localhost'" in proc.stderr
    assert "nothing published" in proc.stderr and wrong not in proc.stderr
    assert published(tmp_path) == [] and staging_left(tmp_path) == []


# -- failures mid-dump ---------------------------------------------------------
def _start_slow_run(tmp_path, server, fresh_cli):
    db = new_db(server, rows=100_000)
    cli = fresh_cli(write_conf(tmp_path, server, db, backup="rate_limit = 1"))
    proc = cli.popen("run")
    dump_pid = wait_for_proc("mariadb-dump", str(server.socket))
    time.sleep(0.8)  # well into the dump: the rate limit keeps it going for ~5 s
    assert proc.poll() is None
    return proc, dump_pid


def test_killing_mysqldump_mid_dump_fails_the_run_and_publishes_nothing(
        tmp_path, mariadb_server, fresh_cli):
    proc, dump_pid = _start_slow_run(tmp_path, mariadb_server, fresh_cli)
    os.kill(dump_pid, signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "mariadb-dump exited with status 137" in err or "killed by signal 9" in err, err
    assert "nothing published" in err
    assert published(tmp_path) == [] and staging_left(tmp_path) == []


def test_killing_the_server_mid_dump_fails_the_run_with_the_tools_error(
        tmp_path, private_mariadb, fresh_cli):
    proc, _ = _start_slow_run(tmp_path, private_mariadb, fresh_cli)
    private_mariadb.kill()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "mariadb-dump exited with status" in err and "Lost connection" in err, err
    assert published(tmp_path) == [] and staging_left(tmp_path) == []


# -- exec_prefix -------------------------------------------------------------
def test_exec_prefix_runs_the_client_tools_as_another_user_in_another_network_namespace(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db = new_db(server, rows=2000)
    spy_dir = Path(tempfile.mkdtemp(prefix="tb-prefix-"))
    try:
        os.chmod(spy_dir, 0o777)
        spy = spy_dir / "where.sh"
        spy.write_text('#!/bin/sh\n{ echo "$(id -un) $(readlink /proc/self/ns/net) $*" | tr "\\n" " "; '
                       f'echo; }} >> {spy_dir}/calls.log\nexec "$@"\n')
        os.chmod(spy, 0o755)
        prefix = f"unshare --net setpriv --reuid=nobody --regid=nogroup --clear-groups {spy}"
        conf = write_conf(tmp_path, server, db, mysql=f"exec_prefix = {prefix}\nverify = restore")
        fresh_cli(conf)("run", check=True)
        calls = (spy_dir / "calls.log").read_text().splitlines()
    finally:
        shutil.rmtree(spy_dir, ignore_errors=True)
    our_netns = os.readlink("/proc/self/ns/net")
    tools = [c.split(" ", 2) for c in calls]
    assert any("mariadb-dump --defaults-extra-file=/dev/fd/3" in c for c in calls)
    assert any(" mariadb --defaults-extra-file=/dev/fd/3" in c for c in calls)  # restore drill
    for user, netns, _args in tools:
        assert user == "nobody" and netns != our_netns
    assert not any(PASSWORD in c for c in calls)
    snap, = published(tmp_path)
    src = read_manifest(snap)["sources"]["mysql"]
    assert src["exec_prefix"][:2] == ["unshare", "--net"] and src["verify"]["result"] == "ok"
    assert src["row_counts"]["torrents"] == 2000


def test_docker_compose_exec_prefix_has_the_right_shape(tmp_path):
    """The command line's shape (tests/docker/ runs it against a real engine).

    What is checked: the configured prefix comes first, untouched; the client
    runs inside the container through `sh -c WRAPPER`, which reads the
    credentials from stdin (docker compose exec -T forwards stdin); no secret
    is on the command line.
    """
    conf = tmp_path / "tb.conf"
    conf.write_text(f"""
[backup]
path = {tmp_path / "backups"}
[mysql]
database = torrust_tracker
user = tracker_backup
exec_prefix = docker compose -f /opt/torrust/docker-compose.yml exec -T mysql
""")
    cfg = load_config(conf).mysql
    client = MysqlClient(cfg, PASSWORD)
    argv = client.argv("mysqldump", "--single-transaction", "torrust_tracker")
    assert argv[:9] == ["docker", "compose", "-f", "/opt/torrust/docker-compose.yml", "exec", "-T",
                        "mysql", "sh", "-c"]
    assert argv[9] == WRAPPER and argv[10:13] == ["sh", "mysqldump", "--defaults-extra-file=/dev/fd/3"]
    assert not any(PASSWORD in a for a in argv)
    assert "-i" not in argv and "-t" not in argv  # no TTY: the stream must stay binary-clean
    fed = b"".join(client.feed([b"payload"]))
    assert fed.startswith(b"[client]\nuser=") and fed.endswith(b"#end-of-options\npayload")


# -- selective tables ----------------------------------------------------------
def _tables_in_dump(snap: Path, db: str) -> list[str]:
    text = zstandard.ZstdDecompressor().stream_reader(
        (snap / f"mysql/{db}.sql.zst").read_bytes()).read().decode()
    return sorted(re.findall(r"^CREATE TABLE `([^`]+)`", text, re.M))


def test_tables_and_exclude_tables_select_what_is_dumped(tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=100)
    only = tmp_path / "only"
    only.mkdir()
    fresh_cli(write_conf(only, mariadb_server, db, mysql="tables = keys torrents whitelist"))(
        "run", check=True)
    snap, = published(only)
    assert _tables_in_dump(snap, db) == ["keys", "torrents", "whitelist"]
    src = read_manifest(snap)["sources"]["mysql"]
    assert src["selected"] == "tables" and src["row_counts"]["torrents"] == 100

    without = tmp_path / "without"
    without.mkdir()
    fresh_cli(write_conf(without, mariadb_server, db, mysql="exclude_tables = torrents"))(
        "run", check=True)
    snap, = published(without)
    assert _tables_in_dump(snap, db) == ["keys", "torrent_aggregate_metrics", "whitelist"]


def test_a_table_that_does_not_exist_is_a_clear_error(tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=10)
    proc = fresh_cli(write_conf(tmp_path, mariadb_server, db, mysql="tables = torrents peers"))("run")
    assert proc.returncode == 1
    assert f"[mysql] tables names peers, not in database '{db}'" in proc.stderr
    assert published(tmp_path) == []


# -- restore drill -------------------------------------------------------------
def test_verify_restore_loads_a_scratch_database_compares_counts_and_drops_it(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db = new_db(server, rows=3000)
    fresh_cli(write_conf(tmp_path, server, db, mysql="verify = restore"))("run", check=True)
    snap, = published(tmp_path)
    src = read_manifest(snap)["sources"]["mysql"]
    check = src["verify"]
    assert check["level"] == "restore" and check["result"] == "ok"
    assert check["restored_row_counts"] == src["row_counts"]
    assert src["row_counts"] == {"keys": 50, "torrent_aggregate_metrics": 1, "torrents": 3000,
                                 "whitelist": 20}
    assert check["scratch_database"].startswith("tracker_backup_verify_")
    assert not [d for d in server.databases() if d.startswith("tracker_backup_verify_")]


def test_verify_restore_without_scratch_privileges_fails_the_run_and_check_config_names_the_grant(
        tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=10, scratch=False)
    cli = fresh_cli(write_conf(tmp_path, mariadb_server, db, mysql="verify = restore"))
    proc = cli("run")
    assert proc.returncode == 1 and "create scratch database failed" in proc.stderr
    assert published(tmp_path) == []
    check = cli("check-config")
    assert check.returncode == 2
    assert ("GRANT ALL PRIVILEGES ON `tracker\\_backup\\_verify\\_%`.* TO "
            "'tracker_backup'@'localhost';") in check.stdout


# -- privileges ----------------------------------------------------------------
def test_check_config_reports_missing_privileges_with_the_grant_that_fixes_them(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db = new_db(server, rows=10)
    server.create_user(USER, PASSWORD, [f"SELECT ON `{db}`.*"])
    cli = fresh_cli(write_conf(tmp_path, server, db))
    check = cli("check-config")
    assert check.returncode == 2
    grant = f"GRANT SELECT, SHOW VIEW, TRIGGER ON `{db}`.* TO 'tracker_backup'@'localhost';"
    assert "lacks SHOW VIEW, TRIGGER" in check.stdout and grant in check.stdout
    server.sql(grant)
    assert cli("check-config").returncode == 0


def test_an_account_that_cannot_see_the_database_gets_a_clear_error(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    db = new_db(server, rows=10)
    server.create_user(USER, PASSWORD, [])
    proc = fresh_cli(write_conf(tmp_path, server, db))("run")
    assert proc.returncode == 1
    assert f"database '{db}' does not exist on the server" in proc.stderr
    assert published(tmp_path) == []


# -- stored dumps --------------------------------------------------------------
def test_verify_of_a_stored_dump_detects_a_missing_trailer(tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=500)
    cli = fresh_cli(write_conf(tmp_path, mariadb_server, db, backup="compression = none"))
    cli("run", check=True)
    snap, = published(tmp_path)
    dump = snap / f"mysql/{db}.sql"
    text = dump.read_bytes()
    cut = text[:text.rindex(b"\n-- Dump completed")]
    dump.write_bytes(cut)
    manifest = read_manifest(snap)
    import hashlib

    manifest["artifacts"][0].update(bytes=len(cut), sha256=hashlib.sha256(cut).hexdigest())
    (snap / "MANIFEST.json").write_text(json.dumps(manifest))
    proc = cli("verify")
    assert proc.returncode == 1
    assert "no '-- Dump completed' trailer" in proc.stdout


# -- the files source and a live datadir -----------------------------------------
def test_files_source_over_a_storage_with_a_live_mariadb_datadir_leaves_it_out(
        tmp_path, mariadb_server, fresh_cli):
    server = mariadb_server
    conf = tmp_path / "tb.conf"
    conf.write_text(f"""
[backup]
path = {tmp_path / "backups"}
[files]
root = {server.base}
include = **
""")
    fresh_cli(conf)("run", check=True)
    snap, = published(tmp_path)
    raw = zstandard.ZstdDecompressor().stream_reader((snap / "files.tar.zst").read_bytes())
    with tarfile.open(fileobj=raw, mode="r|") as tar:
        names = [m.name for m in tar]
    assert "error.log" in names  # the rest of the storage is there
    assert not [n for n in names if n == "data" or n.startswith("data/")]
    left_out = read_manifest(snap)["sources"]["files"]["left_out"]
    assert {"path": "data", "reason": "live MySQL/MariaDB data directory (backed up by [mysql], "
            "never as raw files)"} in left_out


# -- connection by TCP, truncated streams, memory ---------------------------------
def test_host_and_port_connect_over_tcp_and_binlog_off_is_recorded_as_skipped(tmp_path, fresh_cli):
    server = MariaDB.start(tcp=True, log_bin=False)
    try:
        server.create_tracker_db("torrust_tracker", rows=1000)
        server.create_user(USER, PASSWORD, [DUMP_GRANT.format(db="torrust_tracker")],
                           host="127.0.0.1")
        conf = write_conf(tmp_path, server, "torrust_tracker")
        conf.write_text(conf.read_text().replace(
            f"socket = {server.socket}", f"host = 127.0.0.1\nport = {server.port}"))
        fresh_cli(conf)("run", check=True)
    finally:
        server.stop()
    snap, = published(tmp_path)
    src = read_manifest(snap)["sources"]["mysql"]
    assert src["user"] == f"{USER}@127.0.0.1" and src["origin"].endswith(f"127.0.0.1:{server.port}")
    assert src["row_counts"]["torrents"] == 1000
    assert src["binlog"] is None and src["binlog_skipped"] == "binary logging is off on the server"


def test_a_dump_cut_short_with_exit_status_zero_fails_on_the_missing_trailer(
        tmp_path, mariadb_server, fresh_cli):
    db = new_db(mariadb_server, rows=5000)
    # The prefix passes the tools' output through `head`, which ends the stream early and
    # exits 0: only the trailer check can tell.
    conf = write_conf(tmp_path, mariadb_server, db,
                      mysql="exec_prefix = sh -c '\"$@\" | head -c 20000' sh")
    proc = fresh_cli(conf)("run")
    assert proc.returncode == 1
    assert f"the dump of {db} is incomplete: no '-- Dump completed' trailer" in proc.stderr
    assert published(tmp_path) == [] and staging_left(tmp_path) == []


def _peak_rss_kb(conf: Path) -> int:
    """Peak RSS of a `run` (the agent and its waited-for children), in KiB."""
    cmd = ["/usr/bin/python3", "-m", "tracker_backup", "--config", str(conf), "-q", "run"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=agent_env(), stdout=subprocess.DEVNULL, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        assert proc.returncode == 0, err.read().decode()
    return usage.ru_maxrss


def test_agent_memory_does_not_grow_with_the_dump(tmp_path, mariadb_server):
    small_db = new_db(mariadb_server, rows=40_000)  # > 1 MiB: the same chunking as the big one
    big_db = new_db(mariadb_server, rows=500_000)
    mariadb_server.create_user(USER, PASSWORD, [DUMP_GRANT.format(db=small_db),
                                                DUMP_GRANT.format(db=big_db)])
    peaks = {}
    for name, db in (("small", small_db), ("big", big_db)):
        (tmp_path / name).mkdir()
        conf = write_conf(tmp_path / name, mariadb_server, db, backup="compression = none")
        peaks[name] = _peak_rss_kb(conf)
    snap, = published(tmp_path / "big")
    raw = read_manifest(snap)["artifacts"][0]["raw_bytes"]
    assert raw > 25_000_000
    # Holding the dump (or a table) in memory would add ~raw bytes; streaming adds nothing.
    assert peaks["big"] - peaks["small"] < 8 * 1024, (peaks, raw)
    print(f"\npeak RSS: {peaks['small'] / 1024:.1f} MiB (40k rows) vs {peaks['big'] / 1024:.1f} MiB "
          f"(500k rows, {raw / 1e6:.1f} MB dump)")
    mariadb_server.sql(f"DROP DATABASE `{big_db}`; DROP DATABASE `{small_db}`;")


def test_sigterm_mid_dump_stops_mysqldump_and_publishes_nothing(tmp_path, mariadb_server, fresh_cli):
    """systemctl stop during a dump: the agent ends the tool (no transaction left open)."""
    proc, dump_pid = _start_slow_run(tmp_path, mariadb_server, fresh_cli)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "SIGTERM" in err
    wait_for(lambda: not os.path.exists(f"/proc/{dump_pid}"), 10, "mariadb-dump to end with the agent",
             interval=0.05)
    assert published(tmp_path) == [] and staging_left(tmp_path) == []


def test_disk_full_mid_dump_fails_the_run_and_publishes_nothing(tmp_path, mariadb_server, fresh_cli):
    """The backup path is a real 2 MB tmpfs; the dump is about 5.5 MB uncompressed."""
    db = new_db(mariadb_server, rows=100_000)
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(backups)],
                   check=True)
    try:
        proc = fresh_cli(write_conf(tmp_path, mariadb_server, db, backup="compression = none"))("run")
        assert proc.returncode == 1
        assert "No space left on device" in proc.stderr and "nothing published" in proc.stderr
        assert published(tmp_path) == [] and staging_left(tmp_path) == []
    finally:
        subprocess.run(["umount", str(backups)], check=True)


def test_without_mariadb_dump_where_the_client_runs_mysqldump_is_used(
        tmp_path, mariadb_server, fresh_cli):
    """Like a mysql:8 container: only the MySQL names exist (exit 127 for the MariaDB ones)."""
    db = new_db(mariadb_server, rows=100)
    hide = ("sh -c 'case \"$1 $5\" in mariadb-dump*|*\" mariadb-dump\"|mariadb\\ *|*\" mariadb\") "
            "echo \"sh: exec: $1: not found\" >&2; exit 127;; esac; exec \"$@\"' sh")
    conf = write_conf(tmp_path, mariadb_server, db, mysql=f"exec_prefix = {hide}\nverify = restore")
    fresh_cli(conf)("run", check=True)
    snap, = published(tmp_path)
    src = read_manifest(snap)["sources"]["mysql"]
    assert src["client_tool"] == "mysqldump" and src["client_flavour"] == "mariadb"
    assert src["verify"]["result"] == "ok" and src["row_counts"]["torrents"] == 100
