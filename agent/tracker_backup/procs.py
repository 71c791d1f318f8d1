"""The one place that runs external commands.

Rules: argv only (no shell), secrets never in argv or in the child's
environment, output streamed rather than buffered, and the tool's stderr
reported when it fails.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence

from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)

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
