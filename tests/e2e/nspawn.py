#!/usr/bin/python3
"""A cached Debian 12 tree and booted systemd-nspawn containers for the end-to-end tests.

The tree is built once with debootstrap under /var/cache/tracker-backup-tests/,
keyed by a hash of its package list (and suite/mirror): it is rebuilt only when
that list changes. Each container boots it with --volatile=overlay, so every
write is thrown away when the container stops.

Usage as a script (e.g. to warm the cache in CI):  tests/e2e/nspawn.py build
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

CACHE_DIR = Path(os.environ.get("TRACKER_BACKUP_TEST_CACHE", "/var/cache/tracker-backup-tests"))
SUITE = "bookworm"
# The booted base system. The agent's own dependencies are deliberately NOT here:
# installing the .deb with apt inside the container must fetch them from Debian.
TREE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "procps", "iproute2", "gpgv",
    "python3", "util-linux", "ca-certificates",
)
HOST_TOOLS = ("systemd-nspawn", "debootstrap", "nsenter")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def debian_mirror() -> str:
    """The host's Debian mirror (the container needs the same one: no other network here)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        text = path.read_text(errors="replace")
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return "http://deb.debian.org/debian"


def tree_key() -> str:
    """Hash of everything that defines the tree's content."""
    text = "\n".join([SUITE, debian_mirror(), *sorted(TREE_PACKAGES), "devnull-perms-1"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tree_path() -> Path:
    return CACHE_DIR / f"debian12-{tree_key()}"


def missing_host_tools() -> list[str]:
    return [t for t in HOST_TOOLS if shutil.which(t, path=CLEAN_ENV["PATH"]) is None]


def ensure_tree(log=sys.stderr) -> Path:
    """Return the cached tree, building it first (~60 s) if its package list changed."""
    root = tree_path()
    if (root / ".complete").exists():
        return root
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs wait for one build
        if (root / ".complete").exists():
            return root
        for stale in CACHE_DIR.glob(".build-*"):  # left by an interrupted build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = CACHE_DIR / f".build-{tree_key()}-{os.getpid()}"
        print(f"e2e: building Debian 12 tree {root} with debootstrap (once)...", file=log, flush=True)
        t0 = time.monotonic()
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(TREE_PACKAGES)}",
             SUITE, str(tmp), debian_mirror()],
            check=True, env=CLEAN_ENV, stdout=subprocess.DEVNULL,
        )
        # The host's /dev/null is 0620 here; non-root users inside need 0666.
        (tmp / "etc/tmpfiles.d").mkdir(parents=True, exist_ok=True)
        (tmp / "etc/tmpfiles.d/zz-devnull-perms.conf").write_text("z /dev/null 0666 - - -\n")
        # No getty/console noise; networking is the host's.
        for unit in ("getty@tty1.service", "console-getty.service"):
            link = tmp / "etc/systemd/system" / unit
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                link.symlink_to("/dev/null")
        subprocess.run(["chroot", str(tmp), "apt-get", "clean"], check=False, env=CLEAN_ENV)
        (tmp / ".complete").write_text(f"{SUITE} {' '.join(TREE_PACKAGES)}\n")
        for old in CACHE_DIR.glob("debian12-*"):  # an older package list: no longer used
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(root)
        print(f"e2e: tree built in {time.monotonic() - t0:.0f}s", file=log, flush=True)
    return root


class Container:
    """One booted systemd (PID 1 inside an nspawn container) over an overlay of the tree."""

    def __init__(self, tree: Path, workdir: Path, binds: dict[Path, str] | None = None):
        self.name = f"tbe2e-{uuid.uuid4().hex[:8]}"
        self.tree = tree
        self.log_path = workdir / f"{self.name}.console.log"
        self.binds = binds or {}
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        if Path("/sys/fs/cgroup/cgroup.procs").exists():  # cgroup v2 only (unified)
            self.cgroups = [Path("/sys/fs/cgroup") / self.name]
        else:  # hybrid, as on the project's machines
            self.cgroups = [Path("/sys/fs/cgroup/systemd") / self.name,
                            Path("/sys/fs/cgroup/unified") / self.name]

    def _enter_own_cgroup(self) -> None:
        # Runs in the child before exec: each container gets its own cgroup so several can run.
        for cg in self.cgroups:
            with contextlib.suppress(OSError):
                (cg / "cgroup.procs").write_text(str(os.getpid()))

    def start(self, timeout: float = 60) -> Container:
        for cg in self.cgroups:
            with contextlib.suppress(OSError):
                cg.mkdir(exist_ok=True)
        cmd = ["systemd-nspawn", "-D", str(self.tree), "--boot", "--register=no", "--keep-unit",
               "--console=passive", "-M", self.name, "--volatile=overlay"]
        for host, inside in self.binds.items():
            cmd.append(f"--bind-ro={host}:{inside}")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=CLEAN_ENV,
                                     preexec_fn=self._enter_own_cgroup, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while self.leader is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"container did not boot: {self.console_tail()}")
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-x", "systemd"],
                                 capture_output=True, text=True, check=False).stdout.split()
            if out:
                self.leader = int(out[0])
            else:
                time.sleep(0.1)
        while True:  # PID 1 needs a moment before it answers on its bus
            state = self.sh("systemctl is-system-running --wait", check=False, timeout=timeout)
            if state.stdout.strip() in ("running", "degraded"):
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"container boot state {state.stdout.strip()!r} "
                                   f"({state.stderr.strip()}): {self.console_tail()}")
            time.sleep(0.1)

    def console_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the container (all of its namespaces), as root."""
        assert self.leader is not None
        cmd = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--",
               "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
               "HOME=/root", *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"in container: {argv} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run(["/bin/sh", "-ec", script], **kw)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run(["/bin/sh", "-ec", f'cat > "$1" && chmod {mode} "$1"', "sh", path], input=text)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for cg in self.cgroups:
            with contextlib.suppress(OSError):
                cg.rmdir()


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(ensure_tree())
    elif sys.argv[1:] == ["path"]:
        print(tree_path())
    else:
        sys.exit("usage: nspawn.py build|path")
