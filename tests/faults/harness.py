"""Fault-injection harness: a tracker host in a temp dir, the real agent, faults from outside.

Faults are injected only from outside the product: by watching files appear in
the staging directory and the agent's open file descriptors in /proc, by
slowing phases through the agent's own `rate_limit` / `compression_level`
settings, by small filesystems (tmpfs) and by strace, which can SIGKILL the
agent or fail one system call at exactly the point where a phase begins
(`strace -P PATH -e inject=SYSCALL:signal=SIGKILL` stops the syscall before it
runs). The product has no test-only branches.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from conftest import Cli, agent_env
from support import polling
from support.backup_dir import published
from support.tracker_db import create_tracker_db, invariant

RENAMES = "rename,renameat,renameat2"
OPENS = "open,openat"


@dataclass
class Host:
    """A tracker storage, its live database, a backup path and the agent's configuration."""

    root: Path
    storage: Path
    db: Path
    backups: Path
    config: Path
    cli: Cli
    settings: dict = field(default_factory=dict)

    def write_config(self, **sections: str) -> None:
        """Rewrite the configuration; keyword = section name, value = its body."""
        self.settings.update(sections)
        text = "".join(f"[{name}]\n{body.strip()}\n" for name, body in self.settings.items() if body)
        self.config.write_text(text)

    def snapshots(self) -> list[Path]:
        """Published snapshot directories (names like an ID), oldest name first."""
        return published(self.backups)

    def debris(self) -> list[str]:
        """Hidden leftovers of interrupted runs in the backup path."""
        if not self.backups.is_dir():
            return []
        return sorted(p.name for p in self.backups.iterdir()
                      if p.name.startswith((".staging-", ".deleting-")))

    def staging(self) -> Path | None:
        found = [p for p in self.backups.glob(".staging-*") if p.is_dir()] if self.backups.is_dir() else []
        return found[0] if found else None

    def start(self, *args: str, env: dict | None = None, prefix: list[str] | None = None
              ) -> subprocess.Popen:
        """Start `tracker-backup run` (or args) as a child process."""
        cmd = [*(prefix or []), sys.executable, "-m", "tracker_backup", "--config",
               str(self.config), *(args or ("run",))]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=agent_env(PYTHONDONTWRITEBYTECODE="1", **(env or {})))


def make_host(tmp: Path, *, rows: int = 2000, pad: int = 0, wal: bool = True,
              big_file: int = 0, backups: Path | None = None, backup: str = "",
              retention: str = "keep_last = 3\nkeep_days = 7", sqlite: str = "",
              files: bool = True) -> Host:
    """A Torrust-like storage with a live tracker database and a config for the agent.

    `pad` grows the database (random bytes per row, so zstd cannot shrink it);
    `big_file` adds that many random bytes to the files source so a rate limit
    stretches the archive phase.
    """
    storage = tmp / "storage"
    for d in ("tracker/etc", "tracker/lib/database", "tracker/log", "caddy/etc"):
        (storage / d).mkdir(parents=True, exist_ok=True)
    (storage / "tracker/etc/tracker.toml").write_text("[core]\nlisted = false\n")
    (storage / "tracker/log/tracker.log").write_text("noise\n")
    (storage / "caddy/etc/Caddyfile").write_text("tracker.example.org {}\n")
    if big_file:
        (storage / "caddy/etc/big.bin").write_bytes(os.urandom(big_file))
    db = create_tracker_db(storage / "tracker/lib/database/tracker.db", rows=rows, pad=pad, wal=wal)
    if pad:  # a different random blob per row: the copy compresses to about its own size
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("UPDATE padding SET data = randomblob(?)", (pad,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    backups = backups or tmp / "backups"
    config = tmp / "tb.conf"
    host = Host(tmp, storage, db, backups, config, Cli(config))
    host.write_config(
        backup=f"path = {backups}\n{backup}",
        retention=retention,
        sqlite=f"database = {db}\n{sqlite}",
        files=f"root = {storage}\ninclude = **\nexclude = tracker/log/**" if files else "",
    )
    return host


# -- watching the agent from outside --------------------------------------------------------

# The fault tests race the agent to a moment (a file opened, a phase begun): poll fast.
wait_for = partial(polling.wait_for, interval=0.002)


def open_files(pid: int) -> dict[str, int]:
    """Files the process has open now: path → access mode (os.O_RDONLY/O_WRONLY/O_RDWR)."""
    found = {}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                flags = next(int(line.split()[1], 8) for line in fh if line.startswith("flags:"))
        except (OSError, StopIteration):
            continue
        found[target] = flags & os.O_ACCMODE
    return found


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def kill(proc: subprocess.Popen, sig: int = 9) -> tuple[int, str, str]:
    """Send a signal and reap the agent: (returncode, stdout, stderr)."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


class SyscallTrap:
    """strace attached to a running agent that SIGKILLs it (or fails a syscall) at a path.

    `-P PATH` limits tracing to syscalls whose path or descriptor is PATH, so
    the trap fires exactly when the agent first touches that file in the given
    way. With `signal=SIGKILL` the kernel kills the tracee before the syscall
    runs; with `error=ENOSPC` the syscall fails as on a full disk.
    """

    def __init__(self, pid: int, path: Path, syscalls: str, *, when: int = 1,
                 action: str = "signal=SIGKILL"):
        self.log = Path(f"/tmp/strace-{pid}-{time.monotonic_ns()}.log")
        self.proc = subprocess.Popen(
            ["strace", "-f", "-o", str(self.log), "-p", str(pid), "-P", str(path),
             "-e", f"trace={syscalls}", "-e", f"inject={syscalls}:{action}:when={when}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # "strace: Process N attached ..."
        if "attached" not in line:
            raise AssertionError(f"strace did not attach: {line}")

    def close(self) -> str:
        """Stop tracing; return what strace saw (the trapped syscall is in it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        text = self.log.read_text() if self.log.exists() else ""
        self.log.unlink(missing_ok=True)
        return text


def trap_command(path: Path, syscalls: str, *, when: int = 1, action: str = "signal=SIGKILL"
                 ) -> list[str]:
    """Prefix that starts the agent under strace with the trap armed from the first syscall."""
    return ["strace", "-f", "-qq", "-o", "/dev/null", "-P", str(path), "-e", f"trace={syscalls}",
            "-e", f"inject={syscalls}:{action}:when={when}"]


# -- what must hold after any fault -----------------------------------------------------------

def fingerprint(snap: Path) -> dict[str, str]:
    """sha256 of every file in a snapshot directory (relative path → digest)."""
    out = {}
    for path in sorted(snap.rglob("*")):
        if path.is_file():
            out[path.relative_to(snap).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def fingerprints(host: Host) -> dict[str, dict[str, str]]:
    return {p.name: fingerprint(p) for p in host.snapshots()}


def db_state(db: Path) -> dict:
    """Integrity, invariant and row count of the live database (read without changing it)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        total, metric = invariant(conn)
        rows = conn.execute("SELECT count(*) FROM torrents").fetchone()[0]
    finally:
        conn.close()
    return {"integrity": [r[0] for r in check], "consistent": total == metric, "rows": rows}



def start_slow_second_run(tmp: Path) -> tuple[Host, dict, dict, subprocess.Popen]:
    """One good snapshot, then a second run slowed to 1 MB/s over a 6 MB storage file (~6 s:
    room for a few CLI calls on a loaded CI host while it holds the lock).

    Returns (host, fingerprints of the store, state of the live DB, the running agent).
    """
    host = make_host(tmp, big_file=6_000_000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 1")
    return host, before, db_before, host.start()

def assert_live_db_intact(host: Host, before: dict | None = None) -> None:
    """The live database passes integrity_check, its invariant holds, no row vanished."""
    state = db_state(host.db)
    assert state["integrity"] == ["ok"], state
    assert state["consistent"], state
    if before is not None:
        assert state["rows"] >= before["rows"], (before, state)


def assert_published_are_complete(host: Host) -> None:
    """Every directory that looks like a snapshot has a valid manifest and verifies."""
    snaps = host.snapshots()
    for snap in snaps:
        manifest = json.loads((snap / "MANIFEST.json").read_text())
        assert manifest["id"] == snap.name
    if snaps:
        proc = host.cli("verify", "--all", "--json")
        results = json.loads(proc.stdout) if proc.stdout.strip() else []
        assert proc.returncode == 0 and all(r["result"] == "ok" for r in results), \
            f"verify --all: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert {r["id"] for r in results} == {s.name for s in snaps}


def assert_earlier_untouched(host: Host, before: dict[str, dict[str, str]],
                             may_delete: set[str] = frozenset()) -> None:
    """Snapshots published before the fault are byte-for-byte unchanged (or deleted by plan)."""
    now = fingerprints(host)
    for snap_id, files in before.items():
        if snap_id in may_delete:
            # Gone, or (runs in the same second) its ID reused by a newer snapshot; whatever
            # holds the name must still verify, which assert_published_are_complete checks.
            continue
        assert snap_id in now, f"earlier snapshot {snap_id} disappeared"
        assert now[snap_id] == files, f"earlier snapshot {snap_id} changed"


def assert_lock_free(host: Host) -> None:
    """Nobody holds the backup path's lock (the flock is what matters, not the file)."""
    lock = host.backups / ".lock"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def assert_next_run_succeeds(host: Host) -> str:
    """A normal run after the fault: exit 0, debris gone, new snapshot verifies."""
    before = {p.name for p in host.snapshots()}
    proc = host.cli("run", "--no-prune")
    assert proc.returncode == 0, f"next run failed: {proc.returncode}\n{proc.stderr}"
    new = proc.stdout.strip()
    assert new and new not in before and (host.backups / new / "MANIFEST.json").is_file()
    assert host.debris() == [], host.debris()
    verify = host.cli("verify", new)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return new


def assert_survived(host: Host, before: dict[str, dict[str, str]], db_before: dict | None,
                    may_delete: set[str] = frozenset()) -> None:
    """The common promise after any fault: nothing lost, nothing half-done, next run fine."""
    assert_lock_free(host)
    assert_published_are_complete(host)
    assert_earlier_untouched(host, before, may_delete)
    assert_live_db_intact(host, db_before)
    assert_next_run_succeeds(host)
    assert_published_are_complete(host)


# -- small and read-only filesystems ------------------------------------------------------------

def mount_tmpfs(path: Path, size: str) -> None:
    """A tmpfs of `size` (e.g. "8m") at path: a small disk that really fills up."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def leave_free(path: Path, free: int) -> None:
    """Shrink the tmpfs at path so that only about `free` bytes stay available."""
    size = used_bytes(path) + free
    remount(path, f"size={size}")
