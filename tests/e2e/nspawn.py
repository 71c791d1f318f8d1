#!/usr/bin/python3
"""Cached Debian trees (12 and 13) and booted systemd-nspawn containers for the end-to-end tests.

Each tree is built once with debootstrap under /var/cache/tracker-backup-tests/,
keyed by a hash of its release, mirror and package list: it is rebuilt only when
one of those changes. A build tree (the base tree plus the packaging toolchain
and lintian) is derived from the base tree the same way. Each container boots a
tree with --volatile=overlay, so every write is thrown away when it stops.

Usage as a script (e.g. to warm the cache in CI):
  tests/e2e/nspawn.py build [RELEASE...]       (default: every release, base and build trees)
  tests/e2e/nspawn.py path [RELEASE]
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
# The releases the e2e suite runs on (Debian codename -> version number).
RELEASES = {"bookworm": "12", "trixie": "13"}
DEFAULT_RELEASE = "bookworm"
SUITE = DEFAULT_RELEASE  # kept for callers from before there was more than one release
# The booted base system. The agent's own dependencies are deliberately NOT here:
# installing the .deb with apt inside the container must fetch them from Debian.
TREE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "procps", "iproute2", "gpgv",
    "python3", "util-linux", "ca-certificates",
)
# Added to the base tree for building the .deb and running that release's lintian
# (packaging/debian/control Build-Depends, plus what `make deb` itself runs).
BUILD_PACKAGES = (
    "build-essential", "make", "dpkg-dev", "debhelper", "dh-python", "pybuild-plugin-pyproject",
    "python3-all", "python3-setuptools", "lintian",
)
HOST_TOOLS = ("systemd-nspawn", "debootstrap", "nsenter")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _check_release(release: str) -> str:
    if release not in RELEASES:
        raise ValueError(f"unknown Debian release {release!r}: expected one of {sorted(RELEASES)}")
    return release


def _host_apt_sources() -> list[tuple[str, str]]:
    """(file name, text) of the host's apt sources, deb822 files first, then sources.list."""
    found = [(p.name, p.read_text(errors="replace"))
             for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    with contextlib.suppress(OSError):
        found.append(("sources.list", Path("/etc/apt/sources.list").read_text(errors="replace")))
    return found


def host_release() -> str:
    """The host's Debian codename (its apt sources name this suite)."""
    with contextlib.suppress(OSError):
        m = re.search(r"^VERSION_CODENAME=(\S+)$", Path("/etc/os-release").read_text(), re.M)
        if m:
            return m.group(1)
    return DEFAULT_RELEASE


def debian_mirror(release: str = DEFAULT_RELEASE) -> str:
    """The host's Debian mirror (the container needs the same one: no other network here).

    The host's sources name its own release only; every release comes from the same mirror.
    """
    wanted = (release, host_release())
    for name, text in _host_apt_sources():
        if name.endswith(".sources"):
            for stanza in text.split("\n\n"):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and set(wanted) & set(suites.group(1).split()) \
                        and "security" not in uris.group(1):
                    return uris.group(1)
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] in wanted:
                    return parts[1]
    return "http://deb.debian.org/debian"


def _for_release(suites: str, host: str, release: str) -> str:
    """'bookworm bookworm-updates' -> 'trixie trixie-updates' (suites of other releases dropped)."""
    return " ".join(release + s[len(host):] for s in suites.split()
                    if s == host or s.startswith(host + "-"))


def apt_sources(release: str = DEFAULT_RELEASE) -> list[tuple[str, str]]:
    """The host's apt sources of the Debian archive, rewritten for `release`: (file name, text).

    The host's own release gives its Debian entries unchanged; another release gets the
    same mirrors with the suites renamed (bookworm-security -> trixie-security).
    Other repositories (third-party, disabled) are left out.
    """
    _check_release(release)
    host = host_release()
    out = []
    for name, text in _host_apt_sources():
        if name.endswith(".sources"):
            stanzas = []
            for stanza in text.strip().split("\n\n"):
                uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                renamed = _for_release(suites.group(1), host, release) if suites else ""
                if uris and "debian" in uris.group(1) and renamed:
                    stanzas.append(stanza[:suites.start(1)] + renamed + stanza[suites.end(1):])
            body = "\n\n".join(stanzas)
        else:
            lines = []
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[0] == "deb" and "debian" in parts[1] \
                        and _for_release(parts[2], host, release):
                    lines.append(" ".join([*parts[:2], _for_release(parts[2], host, release), *parts[3:]]))
            body = "\n".join(lines)
        if body.strip():
            out.append((name, body.strip("\n") + "\n"))
    if not out:
        out.append(("debian.sources", f"Types: deb\nURIs: {debian_mirror(release)}\nSuites: {release}\n"
                                      "Components: main\n"
                                      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"))
    return out


def tree_key(release: str = DEFAULT_RELEASE, packages: tuple[str, ...] | None = None) -> str:
    """Hash of everything that defines a tree's content."""
    _check_release(release)
    pkgs = TREE_PACKAGES if packages is None else packages
    text = "\n".join([release, debian_mirror(release), *sorted(pkgs), "devnull-perms-1"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flavour(release: str, build: bool) -> str:
    return f"debian{RELEASES[_check_release(release)]}" + ("-build" if build else "")


def tree_path(release: str = DEFAULT_RELEASE, *, build: bool = False) -> Path:
    """Where the base tree (or, with build=True, the build tree) of `release` is cached."""
    key = tree_key(release, (*TREE_PACKAGES, *BUILD_PACKAGES) if build else None)
    return CACHE_DIR / f"{_flavour(release, build)}-{key}"


def missing_host_tools() -> list[str]:
    return [t for t in HOST_TOOLS if shutil.which(t, path=CLEAN_ENV["PATH"]) is None]


def _remove_older_trees(flavour: str, keep: Path) -> None:
    # An older package list or mirror: no longer used. Only "<flavour>-<16 hex>" names match,
    # so debian13-* never removes a debian13-build-* tree.
    for old in CACHE_DIR.glob(f"{flavour}-*"):
        if old != keep and re.fullmatch(rf"{re.escape(flavour)}-[0-9a-f]{{16}}", old.name):
            shutil.rmtree(old, ignore_errors=True)


def _debootstrap(release: str, tmp: Path) -> None:
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(TREE_PACKAGES)}",
         release, str(tmp), debian_mirror(release)],
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


def _add_build_packages(release: str, base: Path, tmp: Path) -> None:
    # A copy of the base tree plus the toolchain: only the toolchain is downloaded.
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], check=True)
    (tmp / ".complete").unlink()
    script = ("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; "
              "cp /mnt/sources/* /etc/apt/sources.list.d/ && "
              "for f in /etc/apt/sources.list.d/sources.list; do "
              "[ ! -f $f ] || mv $f /etc/apt/sources.list; done; "
              "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
              f"--no-install-recommends {' '.join(BUILD_PACKAGES)} >/dev/null && apt-get clean")
    sources = tmp.parent / f"{tmp.name}.sources"
    sources.mkdir()
    try:
        for name, text in apt_sources(release):
            (sources / name).write_text(text)
        subprocess.run(["systemd-nspawn", "-q", "-D", str(tmp), "--register=no", "--keep-unit",
                        f"--bind-ro={sources}:/mnt/sources", "/bin/sh", "-ec", script],
                       check=True, env=CLEAN_ENV, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(sources, ignore_errors=True)


def ensure_tree(log=sys.stderr, release: str = DEFAULT_RELEASE, *, build: bool = False) -> Path:
    """Return the cached tree of `release`, building it first (~60 s) if its content changed.

    build=True: the build tree (base tree plus BUILD_PACKAGES), for `make deb` and lintian.
    """
    root = tree_path(release, build=build)
    if (root / ".complete").exists():
        return root
    base = ensure_tree(log, release) if build else None
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs wait for one build
        if (root / ".complete").exists():
            return root
        for stale in CACHE_DIR.glob(".build-*"):  # left by an interrupted build (we hold the lock)
            # Only this module's names: other caches (Docker images) share the directory.
            if re.fullmatch(r"\.build-(debian\d+(-build)?-)?[0-9a-f]{16}-\d+(\.sources)?", stale.name):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = CACHE_DIR / f".build-{root.name}-{os.getpid()}"
        what = f"Debian {RELEASES[release]} ({release}) {'build ' if build else ''}tree {root}"
        print(f"e2e: building {what} (once)...", file=log, flush=True)
        t0 = time.monotonic()
        if base is not None:
            _add_build_packages(release, base, tmp)
        else:
            _debootstrap(release, tmp)
        packages = (*TREE_PACKAGES, *BUILD_PACKAGES) if build else TREE_PACKAGES
        (tmp / ".complete").write_text(f"{release} {' '.join(packages)}\n")
        _remove_older_trees(_flavour(release, build), root)
        tmp.rename(root)
        print(f"e2e: {what} built in {time.monotonic() - t0:.0f}s", file=log, flush=True)
    return root


def remove_cgroup(cg: Path) -> None:
    """Remove a container's cgroup and what its systemd created in it (payload/, supervisor/
    ...), deepest first: a cgroup with children cannot be removed, one with processes neither
    (rmdir then fails and it stays)."""
    if not cg.is_dir():
        return
    for sub in sorted((d for d in cg.rglob("*") if d.is_dir()), key=lambda d: len(d.parts),
                      reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        cg.rmdir()


class Container:
    """One booted systemd (PID 1 inside an nspawn container) over an overlay of the tree."""

    def __init__(self, tree: Path, workdir: Path, binds: dict[Path, str] | None = None,
                 rw_binds: dict[Path, str] | None = None, release: str = DEFAULT_RELEASE):
        """binds are mounted read-only at the given path inside, rw_binds read-write
        (not under /tmp: Debian 13 mounts a tmpfs there); release names the tree's release."""
        self.name = f"tbe2e-{uuid.uuid4().hex[:8]}"
        self.tree = tree
        self.workdir = workdir
        self.release = release
        self.log_path = workdir / f"{self.name}.console.log"
        self.binds = binds or {}
        self.rw_binds = rw_binds or {}
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
        for host, inside in self.rw_binds.items():
            cmd.append(f"--bind={host}:{inside}")
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
            remove_cgroup(cg)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        for release in argv[1:] or list(RELEASES):
            print(ensure_tree(release=release))
            print(ensure_tree(release=release, build=True))
        return 0
    if argv[:1] == ["path"] and len(argv) <= 2:
        print(tree_path(*argv[1:]))
        return 0
    print("usage: nspawn.py build [RELEASE...] | path [RELEASE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
