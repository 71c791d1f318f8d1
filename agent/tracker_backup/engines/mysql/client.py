"""Running the MySQL/MariaDB client tools with credentials that never show.

The password travels as a client option file on the tool's standard input:

    agent --stdin--> [exec_prefix] sh -c WRAPPER sh TOOL --defaults-extra-file=/dev/fd/3 ARGS

WRAPPER (POSIX sh, run where the tool runs: on this host, or inside the
container through `docker compose exec -T`) reads the option block line by
line up to a sentinel with the `read` builtin (which never reads past a line
end), hands it to the tool through a pipe of its own on fd 3 with the
`printf` builtin, and gives the tool the rest of its standard input (a dump
to restore, SQL to run). So the password is never in any argv, never in any
environment, never on disk, and the pipe fd 3 belongs to whichever user the
prefix runs the tool as (a pipe made by the agent as root could not be
reopened through /dev/fd by another user).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tracker_backup import procs
from tracker_backup.engines.mysql.config import MysqlConfig
from tracker_backup.errors import RunFailed, SourceError

log = logging.getLogger(__name__)

SENTINEL = "#end-of-options"
CREDENTIAL_NAME = "mysql-password"  # $CREDENTIALS_DIRECTORY/mysql-password (LoadCredential=)
# Handed to the unit as that credential by the generator when present (and no password_file).
DEFAULT_PASSWORD_FILE = Path("/etc/tracker-backup/mysql.password")
NOT_FOUND = (126, 127)  # sh/docker: command not found or not executable
WRAPPER = (
    "opts=''\n"
    "while :; do\n"
    "  IFS= read -r line || { echo 'tracker-backup: option block not received' >&2; exit 112; }\n"
    f"  [ \"$line\" = '{SENTINEL}' ] && break\n"
    "  opts=\"$opts$line\n\"\n"
    "done\n"
    "exec 4<&0\n"  # the rest of our stdin, for the tool
    "printf '%s' \"$opts\" | { exec \"$@\" 3<&0 0<&4 4<&-; }\n"
)
OPTION_FILE_ARG = "--defaults-extra-file=/dev/fd/3"


def _option_value(value: str) -> str:
    """Quote a value for a MySQL option file (the parser's escapes: \\\\ \\" \\n \\r \\t)."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def read_password(cfg: MysqlConfig) -> str | None:
    """The password from [mysql] password_file or the systemd credential, else None.

    password_file must not be readable by group or others; a trailing newline
    is not part of the password.
    """
    path = cfg.password_file
    if path is None:
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).is_file():
            path = Path(cred_dir) / CREDENTIAL_NAME
        else:
            return None
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077 and cfg.password_file is not None:
            raise SourceError(
                f"mysql: [mysql] password_file = {path} has mode {stat.S_IMODE(st.st_mode):04o}: "
                f"expected 0600 or stricter, since it holds a password (chmod 600 {path})")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise SourceError(f"mysql: [mysql] password_file = {path} does not exist") from None
    except PermissionError:
        raise SourceError(f"mysql: [mysql] password_file = {path} is not readable "
                          "(permission denied)") from None
    except UnicodeDecodeError:
        raise SourceError(f"mysql: [mysql] password_file = {path} is not UTF-8 text") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise SourceError(f"mysql: [mysql] password_file = {path} is empty: expected the password")
    return password


@dataclass(frozen=True)
class Tools:
    """The client tools found where the client runs, and their flavour."""

    dump: str  # mariadb-dump | mysqldump
    client: str  # mariadb | mysql
    flavour: str  # mariadb | mysql
    version: tuple[int, ...]
    version_text: str


def parse_tool_version(text: str) -> tuple[str, tuple[int, ...]]:
    """(flavour, version) from `mysqldump --version` / `mariadb-dump --version` output."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)-MariaDB", text)
    if m:
        return "mariadb", tuple(int(x) for x in m.groups())
    m = re.search(r"Distrib (\d+)\.(\d+)\.(\d+)", text) or re.search(r"Ver (\d+)\.(\d+)\.(\d+)", text)
    if m:
        return "mysql", tuple(int(x) for x in m.groups())
    raise SourceError(f"mysql: cannot tell the client's version from {text.strip()[:200]!r}")


class MysqlClient:
    """Builds and runs client-tool command lines for one [mysql] configuration."""

    def __init__(self, cfg: MysqlConfig, password: str | None):
        self.cfg = cfg
        self._password = password
        self._tools: Tools | None = None

    # -- command lines ---------------------------------------------------
    def option_block(self) -> bytes:
        """The option file text (with the password), ended by the wrapper's sentinel."""
        lines = ["[client]"]
        if self.cfg.user:
            lines.append(f"user={_option_value(self.cfg.user)}")
        if self._password is not None:
            lines.append(f"password={_option_value(self._password)}")
        lines.append(SENTINEL)
        return ("\n".join(lines) + "\n").encode()

    def connection_args(self) -> list[str]:
        """How to reach the server: a socket, or TCP host and port."""
        if self.cfg.socket:
            return [f"--socket={self.cfg.socket}"]
        if self.cfg.host:
            return [f"--host={self.cfg.host}", f"--port={self.cfg.port}", "--protocol=TCP"]
        return []

    def argv(self, tool: str, *args: str) -> list[str]:
        """The full command: prefix, wrapper, tool, option file on fd 3, connection, args."""
        return [*self.cfg.exec_prefix, "sh", "-c", WRAPPER, "sh", tool, OPTION_FILE_ARG,
                *self.connection_args(), *args]

    def feed(self, payload: Iterable[bytes] = ()) -> Iterable[bytes]:
        """What the wrapper reads on stdin: the option block, then the payload."""
        yield self.option_block()
        yield from payload

    # -- tools -----------------------------------------------------------
    def tools(self) -> Tools:
        """Find the dump tool where the client runs (MariaDB names first) and its flavour."""
        if self._tools is not None:
            return self._tools
        tried = []
        for dump, client in (("mariadb-dump", "mariadb"), ("mysqldump", "mysql")):
            argv = [*self.cfg.exec_prefix, dump, "--version"]
            try:
                code, out, err = procs.run_with_input(argv, what=f"{dump} --version", feed=(),
                                                      timeout=60)
            except RunFailed as exc:  # the first word of argv does not exist here
                if self.cfg.exec_prefix:
                    raise SourceError(f"mysql: [mysql] exec_prefix = "
                                      f"{shlex.join(self.cfg.exec_prefix)}: {exc}") from None
                code, out, err = 127, "", str(exc)
            if code == 0:
                flavour, version = parse_tool_version(out)
                if flavour == "mysql" and client == "mariadb":
                    client = "mysql"
                self._tools = Tools(dump, client, flavour, version, out.strip())
                return self._tools
            tried.append(f"{' '.join(argv)}: status {code}: {(err or out).strip()[:300]}")
            if code not in NOT_FOUND and "not found" not in err:
                break
        raise SourceError("mysql: no mariadb-dump or mysqldump where the client runs"
                          + (f" ([mysql] exec_prefix = {shlex.join(self.cfg.exec_prefix)})"
                             if self.cfg.exec_prefix else
                             " (install mariadb-client or default-mysql-client)")
                          + ": " + "; ".join(tried))

    # -- queries ---------------------------------------------------------
    def query(self, sql: str, *, what: str = "query", database: str | None = None
              ) -> list[list[str]]:
        """Run SQL with the client; return every result row of every statement, split on tabs."""
        tools = self.tools()
        args = ["--batch", "--skip-column-names", "--connect-timeout=20",
                "--default-character-set=utf8mb4"]
        if database:
            args.append(f"--database={database}")
        code, out, err = procs.run_with_input(self.argv(tools.client, *args),
                                              what=f"mysql: {what}",
                                              feed=self.feed([sql.encode()]), timeout=300)
        if code != 0:
            raise SourceError(f"mysql: {what} failed (status {code}): "
                              f"{err.strip()[-2000:] or '(no output)'}")
        return [line.split("\t") for line in out.splitlines()]


def quote_ident(name: str) -> str:
    """`name` as a MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def quote_str(text: str) -> str:
    """'text' as a MySQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
