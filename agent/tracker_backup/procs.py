"""The one place that runs external commands.

Rules: argv only (no shell), secrets never in argv or in the child's
environment, output streamed rather than buffered, and the tool's stderr
reported when it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; Python 3.10+ names it
# Environment variables that may carry secrets into children; always removed.
SECRET_ENV = ("MYSQL_PWD", "MYSQL_PASSWORD", "MARIADB_PASSWORD", "PGPASSWORD")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours minus anything secret."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    # systemd's credential directory is ours, not the child's business.
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update(extra or {})
    return env


def run_command(argv: Sequence[str], *, what: str, timeout: float = 600.0) -> str:
    """Run an operator-configured command; raise RunFailed with its stderr on failure."""
    log.info("%s: running %s", what, " ".join(argv))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=child_env(), stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise RunFailed(f"{what}: command not found: {argv[0]}") from None
    except PermissionError:
        raise RunFailed(f"{what}: not executable: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{what}: did not finish within {timeout:g}s: {' '.join(argv)}") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()[-2000:]
        raise RunFailed(f"{what}: exited with status {proc.returncode}: {err or '(no output)'}")
    return proc.stdout


def run_tool(argv: Sequence[str], *, timeout: float = 10.0,
             env: dict[str, str] | None = None) -> tuple[int, str] | None:
    """Run a helper tool that only answers a question; (status, stdout), or None if it
    cannot be run at all (missing, not executable, hung)."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=child_env() if env is None else env,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.returncode, proc.stdout


def _feed(stdin, chunks: Iterable[bytes], errors: list[BaseException]) -> None:
    """Write `chunks` to a child's stdin, then close it (a thread's body)."""
    try:
        for chunk in chunks:
            stdin.write(chunk)
            stdin.flush()  # a feed may pause (a held-open stdin): what was written must arrive
    except BrokenPipeError:
        pass  # the child stopped reading (it died or finished): its exit status tells why
    except BaseException as exc:  # noqa: BLE001 - reported by the owner via `errors`
        errors.append(exc)
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


class StreamingChild:
    """A child fed through stdin by a thread, its stdout streamed, its stderr kept on disk.

    Secrets travel only in `feed` (the child's standard input), never in argv
    or the environment. stderr goes to an unnamed temporary file, so a chatty
    tool can neither block on a full pipe nor grow our memory.
    """

    def __init__(self, argv: Sequence[str], *, what: str, feed: Iterable[bytes],
                 stdout: bool = True):
        self.argv = list(argv)
        self.what = what
        self._stderr = tempfile.TemporaryFile()
        log.debug("%s: running %s", what,
                  " ".join("'<script>'" if "\n" in a else a for a in self.argv))
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=self._stderr, env=child_env(), close_fds=True,
                # Its own process group, so kill() reaches whatever the command started
                # (a wrapper shell's children, the tool behind a prefix).
                process_group=0)
        except FileNotFoundError:
            self._stderr.close()
            raise RunFailed(f"{what}: command not found: {self.argv[0]}") from None
        except PermissionError:
            self._stderr.close()
            raise RunFailed(f"{what}: not executable: {self.argv[0]}") from None
        if stdout:
            # A 1 MiB pipe instead of 64 KiB: fewer wake-ups for a fast producer (Linux only).
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.proc.stdout.fileno(), F_SETPIPE_SZ, 1 << 20)
        self.feed_errors: list[BaseException] = []
        self._feeder = threading.Thread(target=_feed, args=(self.proc.stdin, feed, self.feed_errors),
                                        name=f"feed-{what}", daemon=True)
        self._feeder.start()

    @property
    def stdout(self) -> BinaryIO:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self, limit: int = 4000) -> str:
        """The last `limit` characters the child wrote to stderr."""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace").strip()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child (and the feeder); return its exit status."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RunFailed(f"{self.what}: did not finish within {timeout:g}s") from None
        self._feeder.join(timeout=10)
        if self.feed_errors:
            raise self.feed_errors[0]
        return code

    def kill(self) -> None:
        """Stop the child now (used when we give up on it) and reap it."""
        if self.proc.poll() is None:  # not reaped yet, so its pid is still its group's id
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._feeder.join(timeout=10)

    def close(self) -> None:
        """Release pipes and the stderr file."""
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> StreamingChild:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.proc.poll() is None:
            self.kill()
        self.close()


def run_with_input(argv: Sequence[str], *, what: str, feed: Iterable[bytes],
                   timeout: float = 600.0) -> tuple[int, str, str]:
    """Run a child fed by `feed` on stdin; return (status, stdout text, stderr text).

    stdout is read fully into memory: for small answers (queries, versions).
    Never raises for a non-zero status; the caller decides what it means.
    """
    with StreamingChild(argv, what=what, feed=feed) as child:
        out = child.stdout.read()
        code = child.wait(timeout=timeout)
        return code, out.decode("utf-8", "replace"), child.stderr_text()
