"""Load a dump into a database through the client tool, and count what arrived.

One path for every load (restore, the drill, `verify = restore`): the dump is
streamed into the client found like the backup's tool, with the password in an
option block on stdin (never argv or the environment) and `exec_prefix` in
front, as for backups.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from tracker_backup import procs
from tracker_backup.engines.mysql.client import MysqlClient, Tools, quote_ident, quote_str

LOAD_TIMEOUT = 86400.0  # a day: big dumps load slowly, but a hung client must end
# First statement of a load kept out of the server's binary log (scratch databases only:
# scratch.unlogged_loads() decides; a real restore is logged like any write).
UNLOGGED = b"SET SESSION sql_log_bin=0;\n"


def unlogged_payload(chunks: Iterable[bytes], unlogged: bool) -> Iterable[bytes]:
    """`chunks`, after UNLOGGED when `unlogged`."""
    return itertools.chain([UNLOGGED], chunks) if unlogged else chunks


def unlogged_sql(sql: str, unlogged: bool) -> str:
    """`sql` for one client session, after UNLOGGED when `unlogged`."""
    return UNLOGGED.decode() + sql if unlogged else sql


def load_dump(client: MysqlClient, tools: Tools, database: str,
              chunks: Iterable[bytes], *, unlogged: bool = False) -> tuple[int, str]:
    """Stream the dump's bytes into `database`; return (exit status, the tool's stderr).

    unlogged: the session's writes stay out of the binary log (the account may: see
    scratch.unlogged_loads).
    """
    argv = client.argv(tools.client, "--batch", f"--database={database}",
                       "--default-character-set=utf8mb4")
    code, _out, err = procs.run_with_input(argv, what=f"mysql: restore into {database}",
                                           feed=client.feed(unlogged_payload(chunks, unlogged)),
                                           timeout=LOAD_TIMEOUT)
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
