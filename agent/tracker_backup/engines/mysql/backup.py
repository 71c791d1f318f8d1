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
of the flags (see `dump_flags`). Credentials: see client.py.
"""

from __future__ import annotations

import logging
import time

from tracker_backup import procs
from tracker_backup.artifacts import CHUNK, Artifact, ArtifactWriter
from tracker_backup.engines.contract import RunContext, SourceResult
from tracker_backup.engines.mysql.client import Tools
from tracker_backup.engines.mysql.dump_scan import DumpScanner
from tracker_backup.engines.mysql.scratch import restore_check
from tracker_backup.engines.mysql.server import MysqlServer
from tracker_backup.errors import SourceError

log = logging.getLogger(__name__)

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



class MysqlBackup(MysqlServer):
    """Backs up one MySQL/MariaDB database with mysqldump."""

    kind = "mysql"

    def backup(self, ctx: RunContext) -> SourceResult:
        tools = self.client.tools()
        info = self.server_info()
        tables = self.select_tables(info)
        missing = self.missing_dump_privileges(info)
        if missing:
            log.warning("mysql: %s", self.grant_hint(info, missing))
        binlog, reason = self.binlog_allowed(info, tools)
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
            details["verify"] = restore_check(self, ctx.staging / artifact.path,
                                              artifact.compression, details["row_counts"], tools)
        else:
            details["verify"] = {"level": "dump", "result": "ok",
                                 "checks": ["header", "trailer", "create-table per table"]}
        return SourceResult(self.name, self.kind, self.origin(), "mysqldump-single-transaction",
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


def child_warnings(text: str) -> list[str]:
    """Non-fatal lines a successful dump printed on stderr (worth a log line)."""
    return [line for line in text.splitlines() if line.strip()][:20]


