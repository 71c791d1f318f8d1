"""Restore the files archive into a directory, refusing anything that could escape it.

Two passes over the archive. The first checks every member before anything is
written: absolute names, '..', device nodes, FIFOs, links (symbolic or hard)
that would point outside the target or through another link, and members
whose path goes through a symlink (in the archive or already in the target)
are refused, so a malicious archive writes nothing at all. The second pass
writes through directory file descriptors opened with O_NOFOLLOW, creates each
file under a hidden name and renames it over the old one, so no symlink in
the target is ever followed, even one planted between the passes.
Modes, owners (when root) and mtimes are kept; directories get theirs last.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import stat
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tracker_backup.artifacts import CHUNK, open_decompressed
from tracker_backup.engines.contract import Part, RestoreAction, RestoreResult
from tracker_backup.engines.files.mtime import mtime_ns_of
from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)

MAX_LISTED = 50
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeArchive(RunFailed):
    """The archive holds a member that could write outside the target."""


@dataclass
class Scan:
    """Result of the checking pass: what the archive holds and what it would change."""

    members: int = 0
    file_bytes: int = 0
    hashes: dict[str, str] = field(default_factory=dict)  # regular file → sha256
    replaces: list[str] = field(default_factory=list)
    new: int = 0
    unchanged: int = 0


@dataclass
class FilesRestored(RestoreResult):
    """An archive written into a directory: members new, replaced, unchanged."""

    members: int = 0
    replaced: int = 0
    new: int = 0
    unchanged: int = 0

    def describe(self) -> str:
        return (f"files -> {self.target} ({self.members} members: {self.new} new, "
                f"{self.replaced} replaced, {self.unchanged} unchanged)")


def _clean_name(name: str) -> tuple[str, ...]:
    """Member name → path components, or raise UnsafeArchive."""
    if name.startswith("/"):
        raise UnsafeArchive(f"files: archive member {name!r} has an absolute path: refused")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"files: archive member {name!r} contains '..': refused")
    return parts


def _check_member(m: tarfile.TarInfo, links: set[tuple[str, ...]],
                  files: set[tuple[str, ...]]) -> tuple[str, ...]:
    """Refuse a member that is not a plain file, directory or contained link."""
    parts = _clean_name(m.name)
    if m.ischr() or m.isblk():
        raise UnsafeArchive(f"files: archive member {m.name!r} is a device node: refused")
    if m.isfifo():
        raise UnsafeArchive(f"files: archive member {m.name!r} is a FIFO: refused")
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
        raise UnsafeArchive(f"files: archive member {m.name!r} has unsupported type {m.type!r}")
    for n in range(1, len(parts)):
        if parts[:n] in links:
            raise UnsafeArchive(f"files: archive member {m.name!r} lies beneath the link "
                                f"{'/'.join(parts[:n])!r}: refused")
    if m.issym():
        if m.linkname.startswith("/"):
            raise UnsafeArchive(f"files: symlink {m.name!r} points to the absolute path "
                                f"{m.linkname!r}, outside the target: refused")
        joined = posixpath.join(*parts[:-1], m.linkname) if parts[:-1] else m.linkname
        via = tuple(p for p in joined.split("/") if p not in ("", "."))
        for n in range(1, len(via)):
            if via[:n] in links:
                raise UnsafeArchive(f"files: symlink {m.name!r} points through another link: "
                                    "refused")
        resolved = posixpath.normpath(joined)
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchive(f"files: symlink {m.name!r} -> {m.linkname!r} points outside "
                                "the target: refused")
    if m.islnk():
        target = _clean_name(m.linkname)
        if target not in files:
            raise UnsafeArchive(f"files: hard link {m.name!r} -> {m.linkname!r} does not point "
                                "to a file earlier in the archive: refused")
    return parts


def _existing(target: Path, parts: tuple[str, ...]) -> os.stat_result | None:
    """lstat of target/parts, refusing a path that goes through a symlink or a file."""
    here = target
    for comp in parts[:-1]:
        here = here / comp
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise UnsafeArchive(f"files: {here} in the target is {what}: restoring "
                                f"{'/'.join(parts)} would go through it: refused")
    try:
        return os.lstat(target.joinpath(*parts))
    except FileNotFoundError:
        return None


def _sha256_of(path: Path) -> str | None:
    sha = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def scan(src: Path, compression: str, target: Path) -> Scan:
    """Pass one: check every member and compare with the target. Writes nothing."""
    result = Scan()
    links: set[tuple[str, ...]] = set()
    files: set[tuple[str, ...]] = set()
    try:
        with open_decompressed(src, compression) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
            for m in tar:
                parts = _check_member(m, links, files)
                result.members += 1
                if not parts:
                    continue
                rel = "/".join(parts)
                digest = None
                if m.isreg():
                    sha = hashlib.sha256()
                    data = tar.extractfile(m)
                    assert data is not None
                    while chunk := data.read(CHUNK):
                        sha.update(chunk)
                    digest = sha.hexdigest()
                    result.hashes[rel] = digest
                    result.file_bytes += m.size
                    files.add(parts)
                if m.issym():
                    links.add(parts)
                st = _existing(target, parts) if target.exists() else None
                result_kind = _compare(m, st, target / rel, digest)
                if result_kind == "new":
                    result.new += 1
                elif result_kind == "same":
                    result.unchanged += 1
                else:
                    result.replaces.append(f"{target / rel} ({result_kind})")
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise RunFailed(f"files: archive {src} is unreadable: {exc}") from None
    return result


def _compare(m: tarfile.TarInfo, st: os.stat_result | None, path: Path, digest: str | None) -> str:
    if st is None:
        return "new"
    if m.isdir():
        if stat.S_ISDIR(st.st_mode):
            return "same"
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeArchive(f"files: {path} in the target is a symlink where the archive has "
                                "a directory; it is never followed: refused (move it away first)")
        raise UnsafeArchive(f"files: {path} exists and is not a directory, the archive has a "
                            "directory there: move it away first")
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeArchive(f"files: {path} is a directory, the archive has a file there: "
                            "move it away first")
    if m.issym():
        if stat.S_ISLNK(st.st_mode) and os.readlink(path) == m.linkname:
            return "same"
        return "differs"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink now, replaced by a file"
    if m.islnk():
        try:
            linked = os.lstat(path.parents[len(Path(m.name).parts) - 1] / m.linkname)
        except OSError:
            return "differs"
        return "same" if (linked.st_dev, linked.st_ino) == (st.st_dev, st.st_ino) else "differs"
    if digest is not None and st.st_size == m.size and _sha256_of(path) == digest:
        if (st.st_mode & 0o7777) != (m.mode & 0o7777):
            return "mode differs"
        return "same"
    return "differs"


def plan(part: Part, src: Path, target: Path) -> tuple[RestoreAction, Scan]:
    """Check the archive against `target`; say what restoring it would replace."""
    found = scan(src, part.artifacts[0].compression, target)
    action = RestoreAction("files", str(target))
    action.replaces = found.replaces[:MAX_LISTED]
    if len(found.replaces) > MAX_LISTED:
        action.replaces.append(f"... and {len(found.replaces) - MAX_LISTED} more")
    action.notes.append(f"{found.members} members, {found.file_bytes} bytes of file content: "
                        f"{found.new} new, {found.unchanged} unchanged, "
                        f"{len(found.replaces)} replaced")
    expected = part.source.get("members")
    if expected is not None and expected != found.members:
        raise RunFailed(f"files: archive has {found.members} members, the manifest says {expected}")
    return action, found


class _Writer:
    """Writes members below one directory fd, never following a symlink."""

    def __init__(self, target: Path, keep_owner: bool):
        missing = []
        here = target
        while not here.exists():
            missing.append(here)
            here = here.parent
        for d in reversed(missing):  # 0755 whatever the umask: the tracker's user must get in
            d.mkdir()
            os.chmod(d, 0o755)
        self.root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.keep_owner = keep_owner and os.geteuid() == 0
        self.dirs: list[tuple[tuple[str, ...], tarfile.TarInfo]] = []
        self.tag = f".tb-restore-{os.getpid()}"

    def close(self) -> None:
        os.close(self.root_fd)

    def open_dir(self, parts: tuple[str, ...]) -> int:
        """A new fd of target/parts, creating missing directories (0700 until fixed)."""
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                try:
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file
                    raise UnsafeArchive(f"files: {'/'.join(parts)} in the target goes through "
                                        f"a symlink or file ({exc.strerror}): refused") from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def add(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        if m.isdir():
            os.close(self.open_dir(parts))
            self.dirs.append((parts, m))
            return
        dfd = self.open_dir(parts[:-1])
        name, tmp = parts[-1], f".{parts[-1]}{self.tag}"
        try:
            if m.isreg():
                self._write_file(tar, m, dfd, tmp)
            elif m.issym():
                os.symlink(m.linkname, tmp, dir_fd=dfd)
                if self.keep_owner:
                    os.chown(tmp, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            else:  # hard link to a file restored earlier
                src = _clean_name(m.linkname)
                sfd = self.open_dir(src[:-1])
                try:
                    os.link(src[-1], tmp, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                finally:
                    os.close(sfd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces, never follows
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        finally:
            os.close(dfd)

    def _write_file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, dfd: int, tmp: str) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        with os.fdopen(fd, "wb", buffering=0) as out:
            data = tar.extractfile(m)
            assert data is not None
            while chunk := data.read(CHUNK):
                out.write(chunk)
            if self.keep_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, ns=(mtime_ns_of(m),) * 2)
            os.fsync(fd)

    def finish_dirs(self) -> None:
        """Directory owners, modes and mtimes, deepest first (writing inside changes mtime)."""
        for parts, m in sorted(self.dirs, key=lambda d: len(d[0]), reverse=True):
            fd = self.open_dir(parts)
            try:
                if self.keep_owner:
                    os.fchown(fd, m.uid, m.gid)
                os.fchmod(fd, m.mode & 0o7777)
                os.utime(fd, ns=(mtime_ns_of(m),) * 2)
                os.fsync(fd)
            finally:
                os.close(fd)


def restore(src: Path, part: Part, target: Path, *, keep_owner: bool = True) -> FilesRestored:
    """Pass one (checks, raises before writing), then pass two: write into `target`."""
    t0 = time.monotonic()
    _action, found = plan(part, src, target)
    writer = _Writer(target, keep_owner)
    written = 0
    links: set[tuple[str, ...]] = set()
    files: set[tuple[str, ...]] = set()
    try:
        with open_decompressed(src, part.artifacts[0].compression) as fh, \
                tarfile.open(fileobj=fh, mode="r|") as tar:
            for m in tar:
                parts = _check_member(m, links, files)  # again: the bytes could have changed
                if m.isreg():
                    files.add(parts)
                if m.issym():
                    links.add(parts)
                if parts:
                    writer.add(tar, m, parts)
                    written += 1
        writer.finish_dirs()
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise RunFailed(f"files: archive {src} is unreadable: {exc}") from None
    finally:
        writer.close()
    log.info("files: wrote %d members under %s (%d replaced, %d new, %d unchanged)",
             written, target, len(found.replaces), found.new, found.unchanged)
    return FilesRestored("files", str(target), found.file_bytes, round(time.monotonic() - t0, 3),
                         members=found.members, replaced=len(found.replaces), new=found.new,
                         unchanged=found.unchanged)
