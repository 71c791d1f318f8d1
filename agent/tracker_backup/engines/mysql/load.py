"""Load a dump into a database through the client tool, and count what arrived.

One path for every load (restore, the drill, `verify = restore`): the dump is
streamed into the client found like the backup's tool, with the password in an
option block on stdin (never argv or the environment) and `exec_prefix` in
front, as for backups.
"""

from __future__ import annotations

from collections.abc import Iterable

from tracker_backup import procs
from tracker_backup.engines.mysql.client import MysqlClient, Tools, quote_ident, quote_str

LOAD_TIMEOUT = 86400.0  # a day: big dumps load slowly, but a hung client must end


def load_dump(client: MysqlClient, tools: Tools, database: str,
              chunks: Iterable[bytes]) -> tuple[int, str]:
    """Stream the dump's bytes into `database`; return (exit status, the tool's stderr)."""
    argv = client.argv(tools.client, "--batch", f"--database={database}",
                       "--default-character-set=utf8mb4")
    code, _out, err = procs.run_with_input(argv, what=f"mysql: restore into {database}",
                                           feed=client.feed(chunks), timeout=LOAD_TIMEOUT)
    return code, err


def count_rows(client: MysqlClient, database: str, tables: Iterable[str],
               what: str = "count restored rows") -> dict[str, int]:
    """Rows per table of `database`, in one query ({} for no tables)."""
    union = " UNION ALL ".join(
        f"SELECT {quote_str(t)}, COUNT(*) FROM {quote_ident(database)}.{quote_ident(t)}"
        for t in tables)
    if not union:
        return {}
    return {t: int(n) for t, n in client.query(union, what=what)}
