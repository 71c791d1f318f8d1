"""The raw binlog stream parser, on recorded MariaDB bytes and on MySQL 8.4-format events.

MariaDB: data/mariadb-10.11-raw-stream.bin is what `mariadb-binlog
--read-from-remote-server --raw` (10.11, ROW format) wrote for two files of a
real server: a start mid-file, a rotation, row and DDL transactions.

MySQL 8.4 cannot run here (no server in Debian or PyPI): its events are built
below from MySQL's documented v4 layout (libbinlogevents: GTID_LOG_EVENT 33
with a UUID and GNO, ANONYMOUS_GTID 34, BEGIN/COMMIT queries,
WRITE_ROWS_EVENT v2 30, XID 16, TRANSACTION_PAYLOAD 40, ROTATE 4), with real
CRC32 checksums. They were not recorded from a real 8.4 server.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path

import pytest

from tracker_backup.engines.mysql.binlog import events as ev
from tracker_backup.engines.mysql.binlog.events import BinlogError, FileStart, StreamParser, Transaction

DATA = Path(__file__).parent / "data"
MARIADB_STREAM = (DATA / "mariadb-10.11-raw-stream.bin").read_bytes()
MARIADB_START = ("binlog.000001", 12713)  # where that recording was asked to start


def parse(data: bytes, file: str, pos: int, step: int | None = None) -> list:
    parser = StreamParser(file, pos)
    items = []
    if step is None:
        items += parser.feed(data)
    else:
        for i in range(0, len(data), step):
            items += parser.feed(data[i:i + step])
    return items


# -- MariaDB, recorded ------------------------------------------------------------
def test_recorded_mariadb_stream_splits_into_gapless_whole_transactions():
    items = parse(MARIADB_STREAM, *MARIADB_START)
    files = [i for i in items if isinstance(i, FileStart)]
    trx = [i for i in items if isinstance(i, Transaction)]
    assert [f.file for f in files] == ["binlog.000001", "binlog.000002"]
    assert all(f.checksum and f.server_version.startswith("10.11") for f in files)
    assert trx[0].pos == MARIADB_START[1]  # the first starts exactly where we asked
    for prev, cur in zip(trx, trx[1:], strict=False):
        if cur.file == prev.file:
            assert cur.pos == prev.end  # no gap, no overlap
        else:
            assert cur.pos == files[1].end  # right after the new file's format description
    # Each ends with its commit: XID for row transactions, the query itself for DDL.
    assert all(t.kinds[-1] in (ev.XID, ev.QUERY) for t in trx)
    assert [t.gtid for t in trx][:2] == ["0-1-21", "0-1-22"]
    ddl = [t for t in trx if t.kinds[-1] == ev.QUERY]
    assert ddl and all(ev.GTID_MARIADB in t.kinds for t in ddl)


def test_any_chunking_of_the_stream_gives_the_same_transactions():
    whole = parse(MARIADB_STREAM, *MARIADB_START)
    for step in (1, 7, 19, 4096):
        assert parse(MARIADB_STREAM, *MARIADB_START, step=step) == whole


def test_a_stream_cut_inside_a_transaction_yields_nothing_of_it():
    items = parse(MARIADB_STREAM, *MARIADB_START)
    last = [i for i in items if isinstance(i, Transaction)][-1]
    # Cut 10 bytes before the end of the recording: inside the last transaction's XID.
    parser = StreamParser(*MARIADB_START)
    got = list(parser.feed(MARIADB_STREAM[:-10]))
    assert last not in got and got == items[:-1]
    assert parser.in_transaction or parser._buf  # held back, not published
    assert parser.pos == items[-2].end  # the resume point is the previous commit


def test_a_flipped_bit_fails_the_event_checksum():
    damaged = bytearray(MARIADB_STREAM)
    damaged[len(damaged) // 2] ^= 0x01
    with pytest.raises(BinlogError, match="CRC32|damaged"):
        parse(bytes(damaged), *MARIADB_START)


def test_garbage_instead_of_a_binlog_is_refused():
    with pytest.raises(BinlogError, match="binlog file header"):
        parse(b"ERROR 1045 (28000): Access denied\n", "binlog.000001", 4)


# -- MySQL 8.4, built from the documented layout ------------------------------------
SERVER_ID = 1


def event(etype: int, body: bytes, log_pos: int, ts: int = 1_800_000_000, flags: int = 0) -> bytes:
    size = ev.HEADER_LEN + len(body) + 4
    head = struct.pack("<IBIIIH", ts, etype, SERVER_ID, size, log_pos, flags)
    crc = zlib.crc32(head + body)
    return head + body + struct.pack("<I", crc)


class MysqlFile:
    """Builds one MySQL 8.4 binlog file's events with correct end positions."""

    def __init__(self, start: int = 4):
        self.pos = start
        self.out = bytearray()

    def add(self, etype: int, body: bytes, ts: int = 1_800_000_000, flags: int = 0) -> int:
        start = self.pos
        self.pos += ev.HEADER_LEN + len(body) + 4
        self.out += event(etype, body, self.pos, ts, flags)
        return start


def fde_body(version: str = "8.4.3") -> bytes:
    post_headers = bytes([0, 13, 0, 8, 0, 18, 0, 4, 4, 4, 4, 18, 0, 0, 95, 0, 4, 26, 8, 0, 0, 0,
                          8, 8, 8, 2, 0, 0, 0, 10, 10, 10, 42, 42, 0, 18, 52, 0, 10, 40, 0])
    return (struct.pack("<H", 4) + version.encode().ljust(50, b"\0") + struct.pack("<I", 0)
            + bytes([19]) + post_headers + bytes([ev.CHECKSUM_CRC32]))


def query_body(sql: str, db: str = "torrust_tracker") -> bytes:
    status = b""
    return (struct.pack("<IIBHH", 7, 0, len(db), 0, len(status)) + status + db.encode() + b"\0"
            + sql.encode())


def gtid_body(sid: uuid.UUID, gno: int) -> bytes:
    # flags, SID, GNO, logical clock typecode + last_committed + sequence_number, ...
    return bytes([1]) + sid.bytes + struct.pack("<q", gno) + bytes([2]) + struct.pack("<qq", 0, gno)


def mysql_84_stream() -> tuple[bytes, uuid.UUID]:
    sid = uuid.UUID("3e11fa47-71ca-11e1-9e33-c80aa9429562")
    f1 = MysqlFile()
    f1.add(ev.FORMAT_DESCRIPTION, fde_body())
    f1.add(ev.PREVIOUS_GTIDS, struct.pack("<Q", 0))
    # A row transaction: GTID, BEGIN, TABLE_MAP, WRITE_ROWS v2, XID.
    f1.add(ev.GTID_MYSQL, gtid_body(sid, 41), ts=1_800_000_001)
    f1.add(ev.QUERY, query_body("BEGIN"), ts=1_800_000_001)
    f1.add(19, b"\x6c\0\0\0\0\0\x01\0" + b"\x0ftorrust_tracker\0\x08torrents\0\x03\x03\x0f\x03\x02\xa0\0\x00",
           ts=1_800_000_001)
    f1.add(30, b"\x6c\0\0\0\0\0\x01\0\x02\0\x03\xff\x00\x01\0\0\0\x02aa\x01\0\0\0", ts=1_800_000_001)
    f1.add(ev.XID, struct.pack("<Q", 99), ts=1_800_000_002)
    # DDL: GTID then the statement alone.
    f1.add(ev.ANONYMOUS_GTID, gtid_body(uuid.UUID(int=0), 0), ts=1_800_000_003)
    f1.add(ev.QUERY, query_body("CREATE TABLE t (id INT)"), ts=1_800_000_003)
    # binlog_transaction_compression = ON: one TRANSACTION_PAYLOAD is the whole transaction.
    f1.add(ev.GTID_MYSQL, gtid_body(sid, 42), ts=1_800_000_004)
    f1.add(ev.TRANSACTION_PAYLOAD, b"\x02\x01\x00" + b"zstd-compressed-events", ts=1_800_000_004)
    f1.add(ev.ROTATE, struct.pack("<Q", 4) + b"binlog.000008", ts=1_800_000_005)
    f2 = MysqlFile()
    f2.add(ev.FORMAT_DESCRIPTION, fde_body())
    f2.add(ev.PREVIOUS_GTIDS, struct.pack("<Q", 0))
    f2.add(ev.GTID_MYSQL, gtid_body(sid, 43), ts=1_800_000_006)
    f2.add(ev.QUERY, query_body("BEGIN"), ts=1_800_000_006)
    f2.add(ev.QUERY, query_body("UPDATE torrents SET completed = completed + 1"), ts=1_800_000_006)
    f2.add(ev.QUERY, query_body("COMMIT"), ts=1_800_000_006)
    return ev.MAGIC + bytes(f1.out) + ev.MAGIC + bytes(f2.out), sid


def test_mysql_84_gtid_transactions_ddl_payloads_and_rotation():
    data, sid = mysql_84_stream()
    items = parse(data, "binlog.000007", 4, step=5)
    files = [i for i in items if isinstance(i, FileStart)]
    trx = [i for i in items if isinstance(i, Transaction)]
    assert [(f.file, f.server_version) for f in files] == [("binlog.000007", "8.4.3"),
                                                             ("binlog.000008", "8.4.3")]
    assert [t.gtid for t in trx] == [f"{sid}:41", None, f"{sid}:42", f"{sid}:43"]
    assert [t.kinds[-1] for t in trx] == [ev.XID, ev.QUERY, ev.TRANSACTION_PAYLOAD, ev.QUERY]
    assert [t.timestamp for t in trx] == [1_800_000_002, 1_800_000_003, 1_800_000_004, 1_800_000_006]
    assert trx[0].kinds == [ev.PREVIOUS_GTIDS, ev.GTID_MYSQL, ev.QUERY, 19, 30, ev.XID]
    assert trx[1].pos == trx[0].end and trx[2].pos == trx[1].end
    assert trx[3].file == "binlog.000008" and trx[3].pos == files[1].end


def test_mysql_heartbeats_and_the_artificial_rotate_are_not_archived():
    f = MysqlFile()
    fake_rotate = event(ev.ROTATE, struct.pack("<Q", 4) + b"binlog.000001", 0, flags=ev.ARTIFICIAL)
    f.add(ev.FORMAT_DESCRIPTION, fde_body())
    start = f.pos
    heartbeat = event(ev.HEARTBEAT_V2, b"\x01\x0dbinlog.000001", 0)
    f.add(ev.ANONYMOUS_GTID, gtid_body(uuid.UUID(int=0), 0))
    f.add(ev.QUERY, query_body("DROP TABLE t"))
    data = ev.MAGIC + fake_rotate + bytes(f.out[:start - 4]) + heartbeat + bytes(f.out[start - 4:])
    trx = [i for i in parse(data, "binlog.000001", 4) if isinstance(i, Transaction)]
    assert len(trx) == 1 and trx[0].kinds == [ev.ANONYMOUS_GTID, ev.QUERY]


def test_file_names_and_indexes():
    assert ev.file_index("binlog.000042") == ("binlog", 42)
    assert ev.file_name("mysql-bin", 7) == "mysql-bin.000007"
    with pytest.raises(BinlogError):
        ev.file_index("binlog")


def test_a_file_ended_by_a_server_stop_or_crash_continues_in_the_next_file():
    f1 = MysqlFile()
    f1.add(ev.FORMAT_DESCRIPTION, fde_body())
    f1.add(ev.ANONYMOUS_GTID, gtid_body(uuid.UUID(int=0), 0))
    f1.add(ev.QUERY, query_body("CREATE TABLE a (id INT)"))
    f1.add(ev.STOP, b"")  # clean shutdown; a crash leaves no STOP at all
    f2 = MysqlFile()
    f2.add(ev.FORMAT_DESCRIPTION, fde_body())
    f2.add(ev.ANONYMOUS_GTID, gtid_body(uuid.UUID(int=0), 0))
    f2.add(ev.QUERY, query_body("CREATE TABLE b (id INT)"))
    for first in (bytes(f1.out), bytes(f1.out)[:-23]):  # with and without the STOP event
        items = parse(ev.MAGIC + first + ev.MAGIC + bytes(f2.out), "binlog.000009", 4, step=3)
        trx = [i for i in items if isinstance(i, Transaction)]
        assert [i.file for i in items if isinstance(i, FileStart)] == ["binlog.000009", "binlog.000010"]
        assert [(t.file, t.kinds) for t in trx] == [("binlog.000009", [ev.ANONYMOUS_GTID, ev.QUERY]),
                                                   ("binlog.000010", [ev.ANONYMOUS_GTID, ev.QUERY])]
