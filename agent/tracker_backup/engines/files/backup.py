"""Files backup: the selected files of the storage directory as one tar archive.

Kept: modes, owners, mtimes, symlinks (stored as links, never followed). What
is left out is decided by select.py. A file that cannot be read fails the run
unless excluded; a file that changes while read is read again.
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from pathlib import Path

from tracker_backup.artifacts import ArtifactWriter
from tracker_backup.engines.contract import RunContext, SourceResult
from tracker_backup.engines.files.config import FilesConfig
from tracker_backup.engines.files.mtime import set_exact_mtime
from tracker_backup.engines.files.select import Selection
from tracker_backup.errors import SourceError

log = logging.getLogger(__name__)

READ_ATTEMPTS = 5
SPOOL_IN_MEMORY = 16 << 20


class FilesBackup:
    """Archives the configured files of the storage directory."""

    kind = "files"

    def __init__(self, cfg: FilesConfig, owned: dict[str, str]):
        self.cfg = cfg
        self.name = "files"
        self.selection = Selection(cfg, owned)

    # -- backup ----------------------------------------------------------
    def backup(self, ctx: RunContext) -> SourceResult:
        chosen, skipped = self.selection.select()
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
            try:
                set_exact_mtime(info, os.lstat(full).st_mtime_ns)
            except FileNotFoundError:
                return None
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
                set_exact_mtime(info, after.st_mtime_ns)
                spool.seek(0)
                return spool, info
            spool.close()
            log.info("files: %s changed while being read; reading it again", rel)
        raise SourceError(f"files: {full} kept changing while being read "
                          f"({READ_ATTEMPTS} attempts); exclude it or back it up another way")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino) == \
        (b.st_size, b.st_mtime_ns, b.st_ctime_ns, b.st_ino)
