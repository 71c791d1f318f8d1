"""MySQL/MariaDB source: a hot, consistent, streamed mysqldump, verified.

mysqldump --single-transaction reads every table inside one REPEATABLE READ
transaction started WITH CONSISTENT SNAPSHOT: InnoDB serves it from MVCC, so
the tracker's writers are never blocked and the dump is one instant of the
database. The dump is streamed from the tool's stdout through the rate limiter
into the artifact (zstd compresses in its own threads) and scanned on the way
(tables, rows per table, binlog coordinates, the completion trailer): memory
stays flat whatever the database size. Any failure (non-zero status, no
trailer, a killed server or tool) raises SourceError with the tool's stderr,
and the run publishes nothing.

Client and server may be MariaDB or MySQL; each flavour gets its own spelling
of the flags (see `dump_flags`). Credentials: see mysql_client.py.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from pathlib import Path

from tracker_backup import procs
from tracker_backup.artifacts import CHUNK, Artifact, ArtifactWriter, iter_decompressed
from tracker_backup.config import MysqlConfig
from tracker_backup.errors import RunFailed, SourceError
from tracker_backup.mysql_client import MysqlClient, Tools, quote_ident, quote_str, read_password
from tracker_backup.mysql_dump import DumpScanner, scan
from tracker_backup.sources.base import RunContext, SourceResult

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "tracker_backup_verify_"  # GRANT ALL ON `tracker\_backup\_verify\_%`.* ...
DUMP_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER")
PROGRESS_EVERY = 2.0  # seconds between progress reports


def dump_flags(tools: Tools, *, binlog: bool) -> list[str]:
    """mysqldump options for a complete, restorable, lock-free dump in this client's spelling."""
    flags = ["--single-transaction", "--quick", "--routines", "--triggers", "--hex-blob",
             "--default-character-set=utf8mb4",
             # Tablespace statements are for NDB/general tablespaces, which the tracker never
             # uses, and MySQL >= 8.0.21 needs PROCESS to dump them.
             "--no-tablespaces"]
    if tools.flavour == "mysql":
        flags.append("--set-gtid-purged=OFF")  # restorable into any server, GTIDs or not
        if tools.version >= (8, 0, 2):
            flags.append("--column-statistics=0")  # else fails against MariaDB / 5.7 servers
    if binlog:
        if tools.flavour == "mysql" and tools.version >= (8, 0, 26):
            flags.append("--source-data=2")
        else:
            flags.append("--master-data=2")
    return flags


def _grantee(current_user: str) -> str:
    user, _, host = current_user.rpartition("@")
    return f"{quote_str(user)}@{quote_str(host)}"


def _like_regex(pattern: str) -> re.Pattern:
    """A SQL LIKE pattern (as in grants on `db\\_%`) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.I)


class MysqlSource:
    """Backs up one MySQL/MariaDB database with mysqldump."""

    kind = "mysql"

    def __init__(self, cfg: MysqlConfig, name: str = "mysql"):
        # `name` lets several jobs (e.g. critical tables daily, stats weekly) keep their
        # artifacts and manifest entries apart: <name>/<database>.sql
        self.cfg = cfg
        self.name = name
        self._client: MysqlClient | None = None

    @property
    def client(self) -> MysqlClient:
        if self._client is None:
            self._client = MysqlClient(self.cfg, read_password(self.cfg))
        return self._client

    def _origin(self) -> str:
        where = (str(self.cfg.socket) if self.cfg.socket else
                 f"{self.cfg.host}:{self.cfg.port}" if self.cfg.host else "default socket")
        prefix = f" via {' '.join(self.cfg.exec_prefix)}" if self.cfg.exec_prefix else ""
        return f"{self.cfg.database}@{where}{prefix}"

    # -- server facts ----------------------------------------------------
    def server_info(self) -> dict:
        """Connect; return user, version, flavour, log_bin and the database's base tables."""
        db = quote_str(self.cfg.database)
        rows = self.client.query(
            "SELECT CURRENT_USER(), VERSION(), @@log_bin;\n"
            f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {db};",
            what="connect")
        # --batch prints each statement's rows in turn: first row, then the count.
        user, version, log_bin = rows[0][0], rows[0][1], rows[0][2]
        if rows[1][0] == "0":
            raise SourceError(f"mysql: database {self.cfg.database!r} does not exist on the "
                              f"server ({self._origin()}), or {user} may not see it")
        tables = self.client.query(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {db} ORDER BY TABLE_NAME", what="list tables")
        return {"user": user, "version": version,
                "flavour": "mariadb" if "mariadb" in version.lower() else "mysql",
                "log_bin": log_bin == "1",
                "tables": [t[0] for t in tables if t[1] == "BASE TABLE"],
                "views": [t[0] for t in tables if t[1] != "BASE TABLE"]}

    def _privileges(self, user: str) -> tuple[set[str], set[str], dict[str, set[str]]]:
        """(global, on this database, per table) privileges of the connected account."""
        grantee = quote_str(_grantee(user))
        rows = self.client.query(
            "SELECT 'g', PRIVILEGE_TYPE, '' FROM information_schema.USER_PRIVILEGES "
            f"WHERE GRANTEE = {grantee} UNION ALL "
            "SELECT 's', PRIVILEGE_TYPE, TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES "
            f"WHERE GRANTEE = {grantee} UNION ALL "
            "SELECT 't', PRIVILEGE_TYPE, TABLE_NAME FROM information_schema.TABLE_PRIVILEGES "
            f"WHERE GRANTEE = {grantee} AND TABLE_SCHEMA = {quote_str(self.cfg.database)}",
            what="read privileges")
        glob, schema, table = set(), set(), {}
        for level, priv, where in rows:
            if level == "g":
                glob.add(priv)
            elif level == "s" and _like_regex(where).match(self.cfg.database):
                schema.add(priv)
            elif level == "t":
                table.setdefault(where, set()).add(priv)
        return glob, schema, table

    def select_tables(self, info: dict) -> list[str]:
        """The tables to dump: [mysql] tables, or all but exclude_tables; check they exist."""
        present = info["tables"] + info["views"]
        wanted = list(self.cfg.tables) or present
        missing = [t for t in (*self.cfg.tables, *self.cfg.exclude_tables) if t not in present]
        if missing:
            key = "tables" if self.cfg.tables else "exclude_tables"
            raise SourceError(f"mysql: [mysql] {key} names {', '.join(missing)}, not in database "
                              f"{self.cfg.database!r} (it has: {', '.join(present) or 'no tables'})")
        chosen = [t for t in wanted if t not in self.cfg.exclude_tables]
        if not chosen:
            raise SourceError(f"mysql: nothing to dump: database {self.cfg.database!r} has no "
                              "tables left after [mysql] tables/exclude_tables")
        return chosen

    def _binlog_allowed(self, info: dict, tools: Tools) -> tuple[bool, str | None]:
        """Whether to record binlog coordinates; else the reason (logged)."""
        if not info["log_bin"]:
            return False, "binary logging is off on the server"
        if info["flavour"] == "mariadb" and tools.flavour == "mariadb":
            # MariaDB reads the position from the consistent snapshot itself
            # (Binlog_snapshot_file/position): no extra privilege, no global lock.
            return True, None
        glob, _, _ = self._privileges(info["user"])
        needed = {"RELOAD", "REPLICATION CLIENT"}
        if "ALL PRIVILEGES" in glob or needed <= glob:
            return True, None
        return False, (f"the account lacks {', '.join(sorted(needed - glob))} (fix: GRANT RELOAD, "
                       f"REPLICATION CLIENT ON *.* TO {_grantee(info['user'])})")

    # -- preflight (check-config) ----------------------------------------
    def preflight(self) -> list[str]:
        """Connect and list what would make a backup fail, each with its fix."""
        try:
            tools = self.client.tools()
            info = self.server_info()
            self.select_tables(info)
        except (SourceError, RunFailed) as exc:
            return [str(exc).removeprefix("mysql: ").removeprefix("[mysql] ")]
        problems = []
        grantee = _grantee(info["user"])
        missing = self.missing_dump_privileges(info)
        if missing:
            problems.append(self._grant_hint(info, missing))
        ok, reason = self._binlog_allowed(info, tools)
        if not ok and info["log_bin"]:
            log.warning("mysql: the binlog position will not be recorded: %s", reason)
        if self.cfg.verify == "restore":
            problem = self._probe_scratch(grantee)
            if problem:
                problems.append(problem)
        return problems

    def missing_dump_privileges(self, info: dict) -> list[str]:
        """Which of SELECT, SHOW VIEW, TRIGGER the account lacks on the tables to dump."""
        glob, schema, table = self._privileges(info["user"])
        have = glob | schema
        if "ALL PRIVILEGES" in have:
            return []
        tables = self.cfg.tables or [t for t in info["tables"] if t not in self.cfg.exclude_tables]
        return [p for p in DUMP_PRIVILEGES
                if p not in have and not all(p in table.get(t, ()) for t in tables)]

    def _grant_hint(self, info: dict, missing: list[str]) -> str:
        grantee = _grantee(info["user"])
        return (f"account {grantee} lacks {', '.join(missing)} on {self.cfg.database!r}, which "
                f"mysqldump needs (without TRIGGER or SHOW VIEW it silently leaves triggers or "
                f"views out). Fix: GRANT {', '.join(DUMP_PRIVILEGES)} ON "
                f"{quote_ident(self.cfg.database)}.* TO {grantee};")

    def _probe_scratch(self, grantee: str) -> str | None:
        """Try what a restore drill does in a scratch database; None if allowed."""
        name = self.scratch_name()
        try:
            self.client.query(
                f"CREATE DATABASE {quote_ident(name)}; USE {quote_ident(name)};\n"
                "CREATE TABLE t (id INT PRIMARY KEY); LOCK TABLES t WRITE;\n"
                "ALTER TABLE t DISABLE KEYS; INSERT INTO t VALUES (1); UNLOCK TABLES;\n"
                f"DROP DATABASE {quote_ident(name)};", what="probe scratch database")
        except SourceError as exc:
            self._drop_scratch(name)
            pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
            return (f"verify = restore needs a scratch database, and {exc}. Fix: GRANT ALL "
                    f"PRIVILEGES ON `{pattern}`.* TO {grantee};")
        return None

    # -- backup ----------------------------------------------------------
    def backup(self, ctx: RunContext) -> SourceResult:
        tools = self.client.tools()
        info = self.server_info()
        tables = self.select_tables(info)
        missing = self.missing_dump_privileges(info)
        if missing:
            log.warning("mysql: %s", self._grant_hint(info, missing))
        binlog, reason = self._binlog_allowed(info, tools)
        if not binlog:
            log.info("mysql: not recording the binlog position: %s", reason)
        args = dump_flags(tools, binlog=binlog)
        if self.cfg.tables:
            args += [self.cfg.database, *tables]
        else:
            args += [f"--ignore-table={self.cfg.database}.{t}" for t in self.cfg.exclude_tables]
            args.append(self.cfg.database)
        ctx.progress(f"mysql: dumping {self.cfg.database} ({len(tables)} tables)")
        dump_started = time.monotonic()
        artifact, scanner = self._dump(ctx, tools, args)
        dump_seconds = time.monotonic() - dump_started
        problems = scanner.problems([t for t in tables if t in info["tables"]])
        if problems:
            raise SourceError(f"mysql: the dump of {self.cfg.database} is incomplete: "
                              + "; ".join(problems))
        details = {
            "database": self.cfg.database,
            "server_flavour": info["flavour"], "server_version": info["version"],
            "client_flavour": tools.flavour, "client_tool": tools.dump,
            "client_version": ".".join(map(str, tools.version)),
            "user": info["user"], "exec_prefix": list(self.cfg.exec_prefix),
            "tables": scanner.tables, "views": scanner.views,
            "selected": "tables" if self.cfg.tables else
                        "exclude_tables" if self.cfg.exclude_tables else "all",
            "row_counts": {t: scanner.row_counts.get(t, 0) for t in scanner.tables},
            "binlog": ({**scanner.binlog, "gtid": scanner.gtid} if scanner.binlog else None),
            "binlog_skipped": None if binlog else reason,
            "dump_flags": args[:len(dump_flags(tools, binlog=binlog))],
            "dump_seconds": round(dump_seconds, 3),
        }
        if self.cfg.verify == "restore":
            ctx.progress("mysql: restore drill into a scratch database")
            details["verify"] = self.restore_check(ctx.staging / artifact.path, artifact.compression,
                                                   details["row_counts"], tools)
        else:
            details["verify"] = {"level": "dump", "result": "ok",
                                 "checks": ["header", "trailer", "create-table per table"]}
        return SourceResult(self.name, self.kind, self._origin(), "mysqldump-single-transaction",
                            [artifact], details)

    def _dump(self, ctx: RunContext, tools: Tools, args: list[str]) -> tuple[Artifact, DumpScanner]:
        scanner = DumpScanner()
        compression = ctx.backup.compression
        argv = self.client.argv(tools.dump, *args)
        last = time.monotonic()
        with procs.StreamingChild(argv, what=f"mysql: {tools.dump}", feed=self.client.feed()) as child:
            with ArtifactWriter(ctx.staging, f"{self.name}/{self.cfg.database}.sql", source=self.name,
                                content="sql", compression=compression,
                                level=ctx.backup.compression_level,
                                threads=1 if compression == "zstd" else 0) as writer:
                while chunk := child.stdout.read(CHUNK):  # whole MiBs: few wake-ups
                    ctx.limiter.consume(len(chunk))
                    writer.write(chunk)
                    scanner.feed(chunk)
                    if time.monotonic() - last > PROGRESS_EVERY:
                        last = time.monotonic()
                        ctx.progress(f"mysql: {writer.raw_bytes / 1e6:.1f} MB dumped")
                scanner.finish()
                code = child.wait()
                if code != 0:
                    err = child.stderr_text() or "(no output)"
                    how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
                    raise SourceError(f"mysql: {tools.dump} {how}: {err}")
                for line in child_warnings(child.stderr_text()):
                    log.warning("mysql: %s: %s", tools.dump, line)
        assert writer.artifact is not None
        return writer.artifact, scanner

    # -- restore drill ---------------------------------------------------
    @staticmethod
    def scratch_name() -> str:
        """A database name no one else uses: prefix, time, random."""
        return f"{SCRATCH_PREFIX}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}_{secrets.token_hex(4)}"

    def _drop_scratch(self, name: str) -> None:
        try:
            self.client.query(f"DROP DATABASE IF EXISTS {quote_ident(name)}", what="drop scratch")
        except SourceError as exc:
            log.error("mysql: could not drop scratch database %s: %s", name, exc)

    def _drop_stale_scratch(self) -> None:
        """Drop scratch databases a killed run or drill left behind (each a whole copy).

        Callers hold the store lock, so no scratch database of ours is in use.
        """
        pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
        try:
            rows = self.client.query(f"SHOW DATABASES LIKE {quote_str(pattern)}",
                                     what="list scratch databases")
        except SourceError as exc:
            log.warning("mysql: could not look for stale scratch databases: %s", exc)
            return
        for row in rows:
            log.warning("mysql: dropping scratch database %s left by an interrupted run", row[0])
            self._drop_scratch(row[0])

    def restore_check(self, path: Path, compression: str, expected: dict[str, int],
                      tools: Tools | None = None) -> dict:
        """Load the dump into a scratch database, compare tables and row counts, drop it."""
        tools = tools or self.client.tools()
        self._drop_stale_scratch()
        name = self.scratch_name()
        started = time.monotonic()
        self.client.query(f"CREATE DATABASE {quote_ident(name)} CHARACTER SET utf8mb4",
                          what="create scratch database")
        try:
            argv = self.client.argv(tools.client, "--batch", f"--database={name}",
                                    "--default-character-set=utf8mb4")
            code, _out, err = procs.run_with_input(
                argv, what=f"mysql: restore into {name}",
                feed=self.client.feed(iter_decompressed(path, compression)), timeout=86400)
            if code != 0:
                raise SourceError(f"mysql: restore drill: loading the dump into scratch database "
                                  f"{name} failed (status {code}): {err[-2000:] or '(no output)'}")
            rows = self.client.query(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
                f"AND TABLE_SCHEMA = {quote_str(name)} ORDER BY TABLE_NAME", what="list restored")
            restored = [r[0] for r in rows]
            counts = {}
            if restored:
                union = " UNION ALL ".join(
                    f"SELECT {quote_str(t)}, COUNT(*) FROM {quote_ident(name)}.{quote_ident(t)}"
                    for t in restored)
                counts = {t: int(n) for t, n in self.client.query(union, what="count restored")}
        finally:
            self._drop_scratch(name)
        problems = []
        if sorted(restored) != sorted(expected):
            problems.append(f"tables {sorted(restored)} differ from the dump's {sorted(expected)}")
        diffs = {t: (counts.get(t), n) for t, n in expected.items() if counts.get(t) != n}
        if diffs:
            problems.append("row counts differ (restored, dumped): "
                            + ", ".join(f"{t}: {a} vs {b}" for t, (a, b) in diffs.items()))
        if problems:
            raise SourceError(f"mysql: restore drill of the dump failed: {'; '.join(problems)}")
        return {"level": "restore", "result": "ok", "scratch_database": name,
                "restored_row_counts": counts, "seconds": round(time.monotonic() - started, 3)}


def child_warnings(text: str) -> list[str]:
    """Non-fatal lines a successful dump printed on stderr (worth a log line)."""
    return [line for line in text.splitlines() if line.strip()][:20]


def verify_stored(snapshot_dir: Path, source: dict, artifacts: list[Artifact], level: str,
                  scratch: Path) -> list[str]:
    """Re-read a stored dump: header, trailer, a CREATE TABLE per recorded table, row counts.

    No configuration is needed (and none is used): a restore drill needs a
    server, so `verify` checks the dump's structure; the run's manifest holds
    the restore drill's result when `verify = restore`.
    """
    del level, scratch  # the whole dump is always scanned; nothing is written
    problems = []
    expected_tables = source.get("tables", [])
    expected_counts = source.get("row_counts", {})
    for art in artifacts:
        try:
            found = scan(iter_decompressed(snapshot_dir / art.path, art.compression))
        except Exception as exc:  # noqa: BLE001 - a damaged file: report, do not crash
            problems.append(f"{art.path}: cannot be read: {type(exc).__name__}: {exc}")
            continue
        problems += [f"{art.path}: {p}" for p in found.problems(expected_tables)]
        counts = {t: found.row_counts.get(t, 0) for t in found.tables}
        if expected_counts and counts != expected_counts:
            problems.append(f"{art.path}: row counts {counts} differ from the manifest's "
                            f"{expected_counts}")
    return problems
