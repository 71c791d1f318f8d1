"""Files source: chosen files of the storage directory as one tar archive.

Kept: modes, owners, mtimes, symlinks (stored as links, never followed).
Left out, with a log line: live SQLite databases and their -wal/-shm/-journal
(their own source copies them consistently; a raw copy could be torn), live
MySQL/MariaDB data directories (raw InnoDB files copied under a running server
are useless), sockets, FIFOs and device nodes. A file that cannot be read fails
the run unless excluded; a file that changes while read is read again.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

from tracker_backup.artifacts import Artifact, ArtifactWriter, open_decompressed
from tracker_backup.config import FilesConfig, SqliteConfig
from tracker_backup.errors import SourceError
from tracker_backup.sources.base import RunContext, SourceResult
from tracker_backup.sources.sqlite import SIDE_SUFFIXES, is_sqlite_file

log = logging.getLogger(__name__)

# Any one of these in a directory marks it as a MySQL/MariaDB data directory.
MYSQL_DATADIR_MARKERS = ("ibdata1", "mysql.ibd", "aria_log_control", "ib_logfile0",
                         "#innodb_redo")
READ_ATTEMPTS = 5
SPOOL_IN_MEMORY = 16 << 20


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    """Translate a glob: `**` spans directories, `*` and `?` stay within one."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(relpath: str, patterns: tuple[str, ...]) -> bool:
    """True if `relpath` or one of its parent directories matches a glob."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(_glob_regex(p.rstrip("/")).match(c) for p in patterns for c in candidates)


def is_mysql_datadir(path: Path) -> bool:
    """True if the directory holds MySQL/MariaDB data files."""
    return any((path / marker).exists() for marker in MYSQL_DATADIR_MARKERS)


class FilesSource:
    """Archives the configured files of the storage directory."""

    kind = "files"

    def __init__(self, cfg: FilesConfig, sqlite: SqliteConfig | None = None):
        self.cfg = cfg
        self.name = "files"
        self.live_db = sqlite.database if sqlite else None

    # -- selection -------------------------------------------------------
    def _skip_reason(self, path: Path, st: os.stat_result) -> str | None:
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            return "socket or FIFO"
        if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            return "device node"
        if not stat.S_ISREG(st.st_mode):
            return None
        if self.live_db is not None:
            names = {str(self.live_db)} | {f"{self.live_db}{s}" for s in SIDE_SUFFIXES}
            if str(path) in names:
                return "the configured SQLite database (backed up by [sqlite])"
        for suffix in SIDE_SUFFIXES:
            if path.name.endswith(suffix):
                base = path.with_name(path.name[: -len(suffix)])
                if is_sqlite_file(base):
                    return f"side file of SQLite database {base.name}"
        if is_sqlite_file(path):
            return "a SQLite database (copying a live one raw could be torn)"
        return None

    def select(self) -> tuple[list[tuple[str, Path]], list[dict]]:
        """Walk root: (relpath, path) to archive, and what was left out and why."""
        root = self.cfg.root
        if not root.is_dir():
            raise SourceError(f"files: root {root} does not exist or is not a directory")
        chosen: list[tuple[str, Path]] = []
        skipped: list[dict] = []
        added_dirs: set[str] = set()

        def add_parents(rel: str) -> None:
            parts = rel.split("/")[:-1]
            for n in range(1, len(parts) + 1):
                parent = "/".join(parts[:n])
                if parent not in added_dirs:
                    added_dirs.add(parent)
                    chosen.append((parent, root / parent))

        def on_error(exc: OSError) -> None:
            raise SourceError(f"files: cannot read directory {exc.filename}: {exc.strerror} "
                              "(fix its permissions or add it to [files] exclude)")

        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
            here = Path(dirpath)
            keep_dirs = []
            for d in sorted(dirnames):
                full = here / d
                rel = full.relative_to(root).as_posix()
                if matches(rel, self.cfg.exclude):
                    continue
                if full.is_symlink():
                    filenames.append(d)  # archived as a link, never followed
                    continue
                if is_mysql_datadir(full):
                    skipped.append({"path": rel, "reason": "live MySQL/MariaDB data directory "
                                    "(backed up by [mysql], never as raw files)"})
                    log.info("files: leaving out %s: MySQL/MariaDB data directory", rel)
                    continue
                keep_dirs.append(d)
                if matches(rel, self.cfg.include):
                    add_parents(rel)
                    if rel not in added_dirs:
                        added_dirs.add(rel)
                        chosen.append((rel, full))
            dirnames[:] = keep_dirs
            for f in sorted(filenames):
                full = here / f
                rel = full.relative_to(root).as_posix()
                if matches(rel, self.cfg.exclude) or not matches(rel, self.cfg.include):
                    continue
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue  # vanished between listing and looking: nothing to back up
                reason = self._skip_reason(full, st)
                if reason:
                    skipped.append({"path": rel, "reason": reason})
                    log.info("files: leaving out %s: %s", rel, reason)
                    continue
                add_parents(rel)
                chosen.append((rel, full))
        return chosen, skipped

    # -- backup ----------------------------------------------------------
    def backup(self, ctx: RunContext) -> SourceResult:
        chosen, skipped = self.select()
        count, total = 0, 0
        ctx.progress(f"files: archiving {len(chosen)} entries from {self.cfg.root}")
        with ArtifactWriter(ctx.staging, "files.tar", source=self.name, content="tar",
                            compression=ctx.backup.compression,
                            level=ctx.backup.compression_level) as writer:
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel, full in chosen:
                    added = self._add(tar, rel, full, ctx)
                    if added is not None:
                        count += 1
                        total += added
        assert writer.artifact is not None
        details = {"root": str(self.cfg.root), "include": list(self.cfg.include),
                   "exclude": list(self.cfg.exclude), "members": count, "file_bytes": total,
                   "left_out": skipped[:200], "left_out_count": len(skipped)}
        return SourceResult(self.name, self.kind, str(self.cfg.root), "tar", [writer.artifact],
                            details)

    def _add(self, tar: tarfile.TarFile, rel: str, full: Path, ctx: RunContext) -> int | None:
        """Add one member; return bytes of file content added (None if it vanished)."""
        try:
            info = tar.gettarinfo(str(full), arcname=rel)
        except FileNotFoundError:
            log.info("files: %s vanished before it was archived", rel)
            return None
        except OSError as exc:
            raise SourceError(f"files: cannot read {full}: {exc.strerror} "
                              "(fix its permissions or add it to [files] exclude)") from None
        if not info.isreg():
            tar.addfile(info)
            return 0
        spool, info = self._read_stable(full, rel, tar, ctx)
        if spool is None:
            return None
        with spool:
            tar.addfile(info, spool)
        return info.size

    def _read_stable(self, full: Path, rel: str, tar: tarfile.TarFile, ctx: RunContext):
        """Read a file completely, re-reading it if it changed while being read."""
        for _attempt in range(READ_ATTEMPTS):
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=ctx.staging)
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                spool.close()
                log.info("files: %s vanished before it was archived", rel)
                return None, None
            except OSError as exc:
                spool.close()
                raise SourceError(f"files: cannot read {full}: {exc.strerror} "
                                  "(fix its permissions or add it to [files] exclude)") from None
            with os.fdopen(fd, "rb") as fh:
                before = os.fstat(fh.fileno())
                try:
                    while chunk := fh.read(1 << 20):
                        ctx.limiter.consume(len(chunk))
                        spool.write(chunk)
                except OSError as exc:
                    spool.close()
                    raise SourceError(f"files: cannot read {full}: {exc.strerror}") from None
                after = os.fstat(fh.fileno())
                info = tar.gettarinfo(arcname=rel, fileobj=fh)
            if _same(before, after) and spool.tell() == after.st_size:
                info.size = spool.tell()
                spool.seek(0)
                return spool, info
            spool.close()
            log.info("files: %s changed while being read; reading it again", rel)
        raise SourceError(f"files: {full} kept changing while being read "
                          f"({READ_ATTEMPTS} attempts); exclude it or back it up another way")


def verify_stored(snapshot_dir: Path, source: dict, artifacts: list[Artifact], level: str,
                  scratch: Path) -> list[str]:
    """Read the whole archive: it must parse and hold the recorded number of members."""
    problems = []
    for art in artifacts:
        count = 0
        try:
            with open_decompressed(snapshot_dir / art.path, art.compression) as fh, \
                    tarfile.open(fileobj=fh, mode="r|") as tar:
                for member in tar:
                    count += 1
                    if member.isreg():
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            while extracted.read(1 << 20):
                                pass
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            problems.append(f"{art.path}: archive unreadable: {exc}")
            continue
        expected = source.get("members")
        if expected is not None and count != expected:
            problems.append(f"{art.path}: {count} members, the manifest says {expected}")
    return problems


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino) == \
        (b.st_size, b.st_mtime_ns, b.st_ctime_ns, b.st_ino)
