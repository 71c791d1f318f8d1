"""A private MariaDB server for tests and benchmarks, with the Torrust tracker's schema.

    server = MariaDB.start()              # ~1.5 s: install a datadir in a temp dir, start mariadbd
    server.create_tracker_db("torrust_tracker", rows=300_000)
    server.sql("SELECT 1")                # as root over the unix socket (socket auth)
    server.create_user("tracker_backup", "secret", ["SELECT, SHOW VIEW, TRIGGER ON torrust_tracker.*"])
    writer = server.start_writer("torrust_tracker", stats=path, rate=300)   # tests/support/mysql_writer.py
    server.stop()

The server has no TCP port (--skip-networking) unless started with tcp=True
(then 127.0.0.1 only, at server.port), binary logging on, and lives
in a directory of its own under /tmp (mode 0755, so a client run as another
user, e.g. through an exec_prefix, can reach the socket). Pytest fixtures:
`mariadb_server` (one per session) and `private_mariadb` (one per test, for
tests that kill it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.net import free_port
from support.writer_process import WriterChild

MARIADBD = "/usr/sbin/mariadbd"
WRITER = Path(__file__).resolve().parent / "mysql_writer.py"
METRIC = "torrents_downloads_total"

# The Torrust tracker's MySQL schema (tracker-core, MySQL driver) plus the metrics table.
SCHEMA = """
CREATE TABLE IF NOT EXISTS whitelist (
    id integer PRIMARY KEY AUTO_INCREMENT,
    info_hash VARCHAR(40) NOT NULL UNIQUE
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS torrents (
    id integer PRIMARY KEY AUTO_INCREMENT,
    info_hash VARCHAR(40) NOT NULL UNIQUE,
    completed INTEGER DEFAULT 0 NOT NULL
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS `keys` (
    `id` INT NOT NULL AUTO_INCREMENT,
    `key` VARCHAR(32) NOT NULL,
    `valid_until` INT(10),
    PRIMARY KEY (`id`),
    UNIQUE (`key`)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS torrent_aggregate_metrics (
    id integer PRIMARY KEY AUTO_INCREMENT,
    metric_name VARCHAR(50) NOT NULL UNIQUE,
    value INTEGER DEFAULT 0 NOT NULL
) ENGINE=InnoDB;
"""
TRACKER_TABLES = ("keys", "torrent_aggregate_metrics", "torrents", "whitelist")


def info_hash(n: int) -> str:
    """The n-th deterministic info-hash (40 hex digits), as in tests/support/tracker_db.py."""
    return f"{n:040x}"


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariaDB:
    """One private mariadbd process and its data directory."""

    def __init__(self, base: Path, port: int | None = None):
        self.base = base
        self.port = port  # TCP on 127.0.0.1 when set; else no networking at all
        self.datadir = base / "data"
        self.tmpdir = base / "tmp"
        self.socket = base / "mysqld.sock"
        self.pidfile = base / "mysqld.pid"
        self.errlog = base / "error.log"
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------
    @classmethod
    def start(cls, log_bin: bool = True, tcp: bool = False) -> MariaDB:
        """Create a data directory in a fresh temp dir and start a server on it.

        tcp=True also listens on 127.0.0.1 at a free port (server.port).
        """
        base = Path(tempfile.mkdtemp(prefix="tb-mariadb-"))
        os.chmod(base, 0o755)
        shutil.chown(base, "mysql", "mysql")  # the server writes its socket, pid and log here
        server = cls(base, free_port() if tcp else None)
        for d in (server.datadir, server.tmpdir):
            d.mkdir()
            shutil.chown(d, "mysql", "mysql")
        # A tmpdir of its own: servers bootstrapping at the same time in a shared /tmp
        # remove each other's temporary tables ("Unknown table 'mysql.tmp_user_sys'").
        proc = subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={server.datadir}",
             f"--tmpdir={server.tmpdir}", "--auth-root-authentication-method=socket",
             "--skip-test-db"],
            capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db failed: {(proc.stderr or proc.stdout)[-2000:]}")
        try:
            server._spawn(log_bin)
        except BaseException:
            server.stop()  # never leave a half-started server or its directory behind
            raise
        return server

    def _spawn(self, log_bin: bool) -> None:
        args = [MARIADBD, "--no-defaults", "--user=mysql", f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}", f"--socket={self.socket}", f"--pid-file={self.pidfile}",
                f"--log-error={self.errlog}", "--innodb-buffer-pool-size=256M",
                "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve"]
        if self.port:
            args += ["--bind-address=127.0.0.1", f"--port={self.port}"]
        else:
            args.append("--skip-networking")
        if log_bin:
            args += [f"--log-bin={self.datadir}/binlog", "--server-id=1", "--sync-binlog=0"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}: {self.error_log()}")
            probe = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}",
                                    "-e", "SELECT 1"], capture_output=True, timeout=30)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not accept connections: {self.error_log()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def error_log(self) -> str:
        try:
            return self.errlog.read_text()[-3000:]
        except OSError:
            return "(no error log)"

    def kill(self) -> None:
        """SIGKILL the server (a crash, as far as clients can tell)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop cleanly (SIGTERM, wait) and remove the temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- SQL -------------------------------------------------------------
    def sql(self, text: str, database: str | None = None) -> list[list[str]]:
        """Run SQL as root; return the rows of the output (tab-separated fields)."""
        cmd = ["mariadb", "--no-defaults", f"--socket={self.socket}", "--batch",
               "--skip-column-names"]
        if database:
            cmd.append(f"--database={database}")
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"SQL failed: {proc.stderr.strip()}\n{text[:500]}")
        return [line.split("\t") for line in proc.stdout.splitlines()]

    def value(self, text: str, database: str | None = None) -> str:
        """The first field of the first row."""
        return self.sql(text, database)[0][0]

    def create_tracker_db(self, name: str, rows: int = 1000, keys: int = 50,
                          whitelist: int = 20) -> None:
        """A database with the tracker's tables, `rows` torrents and the metric = sum(completed)."""
        last = max(rows - 1, 0)
        self.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`;")
        fill = [SCHEMA]
        if rows:
            fill.append("INSERT INTO torrents (info_hash, completed) SELECT LPAD(HEX(seq), 40, '0'), "
                        f"seq % 51 FROM seq_0_to_{last};")
        if keys:
            fill.append("INSERT INTO `keys` (`key`, valid_until) SELECT CONCAT('key', LPAD(seq, 29, "
                        f"'0')), 2000000000 + seq FROM seq_0_to_{keys - 1};")
        if whitelist:
            fill.append("INSERT INTO whitelist (info_hash) SELECT LPAD(HEX(1000000000000 + seq), 40, "
                        f"'0') FROM seq_0_to_{whitelist - 1};")
        fill.append("INSERT INTO torrent_aggregate_metrics (metric_name, value) SELECT "
                    f"'{METRIC}', COALESCE(SUM(completed), 0) FROM torrents;")
        self.sql("\n".join(fill), database=name)

    def create_user(self, user: str, password: str | None, grants: list[str],
                    host: str = "localhost") -> None:
        """(Re)create 'user'@'host' with `grants` (each 'PRIVS ON what').

        'localhost' is the unix socket; TCP clients from 127.0.0.1 need host='127.0.0.1'.
        """
        ident = f" IDENTIFIED BY {sql_str(password)}" if password is not None else ""
        lines = [f"DROP USER IF EXISTS '{user}'@'{host}';",
                 f"CREATE USER '{user}'@'{host}'{ident};"]
        lines += [f"GRANT {g} TO '{user}'@'{host}';" for g in grants]
        self.sql("\n".join(lines))

    def invariant(self, database: str) -> tuple[int, int]:
        """(sum of completed, the aggregate metric): equal in any consistent state."""
        row = self.sql("SELECT (SELECT COALESCE(SUM(completed), 0) FROM torrents), (SELECT value "
                       f"FROM torrent_aggregate_metrics WHERE metric_name = '{METRIC}')", database)[0]
        return int(row[0]), int(row[1])

    def databases(self) -> list[str]:
        return [r[0] for r in self.sql("SHOW DATABASES")]

    def purge_binlogs(self, within: float = 60.0) -> str:
        """Rotate, then PURGE BINARY LOGS up to the new file until the server really let the
        old ones go; returns the file left.

        MariaDB keeps a binlog file until InnoDB has checkpointed the commits in it
        (its binlog checkpoint, written a moment after FLUSH BINARY LOGS): a PURGE
        before that leaves the file in place with only a warning.
        """
        self.sql("FLUSH BINARY LOGS")
        deadline = time.monotonic() + within
        while True:
            current = self.sql("SHOW MASTER STATUS")[0][0]
            self.sql(f"PURGE BINARY LOGS TO '{current}'")
            left = [r[0] for r in self.sql("SHOW BINARY LOGS")]
            if left == [current]:
                return current
            assert time.monotonic() < deadline, f"the server kept {left} after PURGE TO {current}"
            time.sleep(0.5)

    def start_writer(self, database: str, stats: Path, rate: float = 300,
                     existing: int = 1000, acks: Path | None = None) -> MysqlWriter:
        """Start tests/support/mysql_writer.py against `database` (stop() it afterwards)."""
        return MysqlWriter(self, database, stats, rate, existing, acks)


class MysqlWriter(WriterChild):
    """A tracker-style writer process (tests/support/mysql_writer.py)."""

    def __init__(self, server: MariaDB, database: str, stats: Path, rate: float, existing: int,
                 acks: Path | None = None, start_new: int | None = None):
        self.acks_path = acks
        cmd = [sys.executable, str(WRITER), "--socket", str(server.socket), "--database", database,
               "--rate", str(rate), "--stats", str(stats), "--existing", str(existing)]
        if acks:
            cmd += ["--acks", str(acks)]
        if start_new is not None:
            cmd += ["--start-new", str(start_new)]
        super().__init__(cmd, stats, "mysql writer", start_timeout=20)

    def mark(self) -> dict:
        """Ask the writer to start a new latency window; return stats of the one before."""
        before = self.stats()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while self.stats().get("window", 0) == before.get("window", 0):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return self.stats()

    def acks(self) -> list[tuple[int, float, float]]:
        """(torrent number, begin, ack) of every committed new torrent so far (needs acks=)."""
        if self.acks_path is None or not self.acks_path.exists():
            return []
        out = []
        for line in self.acks_path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((int(parts[0]), float(parts[1]), float(parts[2])))
        return out


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDB]:
    """One private MariaDB server for the whole test session (do not kill it)."""
    server = MariaDB.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_mariadb() -> Iterator[MariaDB]:
    """A private MariaDB server for one test (which may kill it)."""
    server = MariaDB.start()
    try:
        yield server
    finally:
        server.stop()
