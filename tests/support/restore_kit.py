"""Helpers for restore tests: forge artifacts into real snapshots, describe directory trees."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import zstandard

from support.backup_dir import published


def latest_snapshot(backups: Path) -> Path:
    """The newest published snapshot directory."""
    return published(backups)[-1]


def forge_artifact(snap: Path, art_path: str, raw: bytes, *, members: int | None = None) -> None:
    """Replace an artifact's content and make the manifest agree (hashes, sizes, members).

    This is how an attacker who can write the backup volume would do it: the
    checksums pass, so the restore's own member checks are what must refuse.
    """
    manifest_path = snap / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    art = next(a for a in manifest["artifacts"] if a["path"] == art_path)
    stored = zstandard.ZstdCompressor().compress(raw) if art["compression"] == "zstd" else raw
    (snap / art_path).write_bytes(stored)
    art.update(bytes=len(stored), sha256=hashlib.sha256(stored).hexdigest(), raw_bytes=len(raw))
    if members is not None:
        manifest["sources"][art["source"]]["members"] = members
    manifest_path.write_text(json.dumps(manifest))


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar archive (PAX) of hand-made members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644,
           data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    """One hand-made tar member."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    if kind == tarfile.REGTYPE and data is None:
        data = b"payload\n"
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, data


def tree(root: Path) -> dict[str, tuple]:
    """Every entry below root: (type, mode, uid, gid, content or link target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", None)
            else:
                what = ("file", path.read_bytes())
            out[rel] = (what[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what[1])
    return out


def leave_stale_wal(db: Path, rows: int) -> None:
    """Commit rows into the WAL without checkpointing, then die (SIGKILL): -wal stays."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.execute('BEGIN')\n"
        f"c.executemany('INSERT INTO torrents(info_hash, completed) VALUES (?, 7)',"
        f" ((f'{{n:040x}}',) for n in range(5*10**9, 5*10**9 + {rows})))\n"
        "c.execute('COMMIT')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait()
