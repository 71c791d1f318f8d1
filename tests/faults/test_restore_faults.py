"""SIGKILL during an in-place SQLite restore: the live path always holds a whole database.

The live database is left as a crashed tracker leaves it: committed
transactions still in its -wal. The restore must never leave the path empty
(a tracker started then creates an empty database) and never put the restored
database beside the old one's -wal (SQLite would replay foreign frames into it).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import psutil
import pytest

from faults.harness import db_state, make_host, trap_command
from support.polling import wait_for

KILLED = (-9, 128 + 9)


def _crash_writer(db, rows: int) -> None:
    """Commit rows into the WAL (no checkpoint), then die like a crashed tracker."""
    code = (
        "import os, signal, sqlite3\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA wal_autocheckpoint=0')\n"
        f"for n in range(10**7, 10**7 + {rows}):\n"
        "    c.execute('INSERT INTO torrents(info_hash, completed) VALUES (?, 0)', (f'{n:040x}',))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], check=False)


TRAPS = {
    # moment: (file whose syscall is trapped, syscalls, strace action)
    "before the -wal is moved aside": ("-wal", "rename,renameat,renameat2", "signal=SIGKILL"),
    "before the database is linked aside": ("", "link,linkat", "signal=SIGKILL"),
    # strace cannot match rename's second path, so hold the agent just after the link
    # (the last step before the rename) and kill it there.
    "after the link, before the restored file is renamed in": ("", "link,linkat",
                                                               "delay_exit=20000000"),
}


def _kill_tracee(strace: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL the agent traced by `strace` once it is held in the delayed syscall."""
    tracer = psutil.Process(strace.pid)
    held = wait_for(lambda: next((c for c in tracer.children() if _delayed(c)), None), timeout,
                    "the agent to reach the delayed syscall", interval=0.01)
    held.kill()
    strace.kill()  # strace itself would sit out the rest of the delay


def _delayed(proc: psutil.Process) -> bool:
    try:
        with open(f"/proc/{proc.pid}/syscall") as fh:
            return fh.read().split()[0] in ("86", "265")  # link, linkat (x86_64) being held
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("moment", list(TRAPS))
def test_sigkill_during_in_place_restore_leaves_a_whole_database_at_the_live_path(tmp_path, moment):
    host = make_host(tmp_path)
    snap = host.cli("run", check=True).stdout.strip()
    _crash_writer(host.db, 300)
    wal = host.db.with_name(host.db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    live_rows = db_state(host.db)["rows"]
    assert live_rows == 2300
    suffix, syscalls, action = TRAPS[moment]
    trap = trap_command(host.db.with_name(host.db.name + suffix), syscalls, action=action)
    proc = host.start("restore", snap, "--kind", "sqlite", prefix=trap)
    if action.startswith("delay"):
        _kill_tracee(proc)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode in KILLED or action.startswith("delay"), \
        f"trap did not fire: {proc.returncode}\n{err}"
    assert "restored snapshot" not in err, "the restore finished: the fault missed"

    # Whatever the moment: a whole database at the live path, consistent, old or restored.
    assert host.db.exists(), "the live path was left empty"
    own_wal = wal.exists()  # looked at before opening the database creates one
    state = db_state(host.db)
    assert state["integrity"] == ["ok"] and state["consistent"], state
    if own_wal:  # a -wal beside the live file must be its own: all 300 rows still there
        assert state["rows"] == live_rows, state
    else:  # the rows that were only in the WAL are kept aside, in the moved -wal
        aside = sorted(p.name for p in host.db.parent.glob(f"{host.db.name}.before-restore-*"))
        assert any(name.endswith("-wal") for name in aside), aside

    # Running the restore again completes it, and the old set is kept aside whole.
    again = host.cli("restore", snap, "--kind", "sqlite")
    assert again.returncode == 0, again.stdout + again.stderr
    assert db_state(host.db)["rows"] == 2000
    assert not list(host.db.parent.glob(f".{host.db.name}.restore-*")), "restore debris left"


def test_restore_onto_a_full_disk_fails_cleanly_and_leaves_the_live_database_untouched(
        tmp_path, tmpfs):
    host = make_host(tmp_path, rows=1000, pad=4000)  # ~4 MB, incompressible
    size = host.db.stat().st_size
    live_dir = tmpfs(tmp_path / "live", f"{size + 512 * 1024}")  # room for one copy only
    live = live_dir / "tracker.db"
    live.write_bytes(host.db.read_bytes())
    host.write_config(sqlite=f"database = {live}")
    snap = host.cli("run", check=True).stdout.strip()
    digest = hashlib.sha256(live.read_bytes()).hexdigest()
    for args in (("--to", str(live_dir / "restored.db")), ()):  # elsewhere, then in place
        proc = host.cli("restore", snap, "--kind", "sqlite", *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert "No space left on device" in last and str(live_dir) in last, last
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
        left = [p.name for p in live_dir.iterdir()
                if not p.name.startswith("tracker.db")]  # the database and its -wal/-shm
        assert left == [], f"restore debris left: {left}"
        assert hashlib.sha256(live.read_bytes()).hexdigest() == digest
    assert db_state(live)["integrity"] == ["ok"]
