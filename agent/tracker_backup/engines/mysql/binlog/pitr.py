"""Point-in-time restore for MySQL: which dump, which archived binlog, up to when.

`restore --at T` means: the database as at the end of second T (binlog
timestamps have one-second resolution), i.e. every transaction whose commit
event is stamped T or earlier. The plan:

1. the generations of <path>/archive/mysql/ and, for each, the dumps tied to
   it (a good snapshot whose recorded binlog coordinates lie inside it,
   docs/format.md "Binlog archive"); a dump's own point in time is the commit
   time of the last archived transaction it contains;
2. the newest such dump whose point is <= T, in a generation whose archive
   reaches T (its last archived commit is >= T, or T is before the newest
   commit the archive holds);
3. its dump loaded (the engine's ordinary restore), then the archived
   transactions after its coordinates, up to T, replayed (replay.py).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tracker_backup.archive import status as archive_status
from tracker_backup.archive.segment import SegmentError
from tracker_backup.archive.store import Generation, SourceArchive
from tracker_backup.engines.mysql.binlog.archiver import dump_bases
from tracker_backup.engines.mysql.binlog.events import file_index
from tracker_backup.engines.mysql.binlog.replay import ReplayPiece, replay
from tracker_backup.engines.mysql.client import MysqlClient, Tools, quote_ident, quote_str
from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)


def _key(file: str, pos: int) -> tuple[int, int]:
    return file_index(file)[1], pos


@dataclass
class Tied:
    """A dump tied to a generation: where its replay starts and its point in time."""

    snapshot: str
    file: str
    pos: int
    point: float  # commit time of the newest transaction the dump holds (or its finish time)
    after_seq: int  # replay the generation's trx entries with seq > this
    fde_seq: int = 1  # the entry holding the format description of `file` (replay reads from it)


@dataclass
class GenerationSpan:
    generation: Generation
    first_ts: float | None = None
    last_ts: float | None = None
    entries: int = 0
    bases: list[Tied] = field(default_factory=list)
    problem: str | None = None


def _meta_key(meta: dict | None) -> tuple[int, int] | None:
    return _key(meta["file"], meta["end"]) if meta and "end" in meta else None


def _fde_seq(gen: Generation, segs: list, file: str) -> int | None:
    """The seq of the `file` entry of binlog `file` (entries are in file order: trailers find it)."""
    index = file_index(file)[1]
    for seg in segs:
        last = seg.trailer.get("last_meta") or {}
        if "file" not in last or file_index(last["file"])[1] < index:
            continue
        for entry in gen.iter_entries(seg.first_seq - 1, seg.last_seq, segments=[seg]):
            if entry.meta.get("kind") == "file" and entry.meta.get("file") == file:
                return entry.seq
        break
    return None  # before the archive's (pruned) start: not a base any more


def _tie(gen: Generation, segs: list, dump: dict, start: tuple[int, int]) -> Tied | None:
    """Where `dump` sits in `gen`: after which entry its replay starts, and its point in time.

    Only the segments holding its coordinates and its file's format description are read
    (trailers locate them).
    """
    c = _key(dump["file"], dump["pos"])
    if c < start:
        return None
    prev_ts: float | None = None
    tied: Tied | None = None
    for seg in segs:
        last = seg.trailer.get("last_meta")
        if _meta_key(last) is not None and _meta_key(last) <= c:
            if last.get("kind") == "trx":
                prev_ts = float(last["ts"])
            continue
        for entry in gen.iter_entries(seg.first_seq - 1, seg.last_seq, segments=[seg]):
            meta = entry.meta
            if meta.get("kind") != "trx":
                continue
            if _key(meta["file"], meta["end"]) > c:
                point = prev_ts if prev_ts is not None else min(dump["finished"], float(meta["ts"]))
                tied = Tied(dump["snapshot"], dump["file"], dump["pos"], point, entry.seq - 1)
                break
            prev_ts = float(meta["ts"])
        if tied is not None:
            break
    if tied is None:
        last_seq = segs[-1].last_seq if segs else 0
        tied = Tied(dump["snapshot"], dump["file"], dump["pos"],
                    prev_ts if prev_ts is not None else dump["finished"], last_seq)
    if segs:
        fde = _fde_seq(gen, segs, dump["file"])
        if fde is None:
            return None
        tied.fde_seq = fde
    return tied


def spans(backup_path: Path, source: str = "mysql") -> list[GenerationSpan]:
    """Every generation with its time span and tied dumps, oldest first."""
    dumps = dump_bases(backup_path, source)
    out = []
    for gen in SourceArchive(backup_path, source).generations():
        span = GenerationSpan(gen)
        segs, span.problem = gen.segments()
        start_meta = (gen.info.get("identity") or {}).get("start")
        if not start_meta:
            out.append(span)
            continue
        start = _key(start_meta["file"], start_meta["pos"])
        span.entries = segs[-1].last_seq if segs else 0
        for seg in segs:
            for meta in (seg.trailer.get("first_meta"), seg.trailer.get("last_meta")):
                if meta and meta.get("kind") == "trx":
                    ts = float(meta["ts"])
                    span.first_ts = ts if span.first_ts is None else min(span.first_ts, ts)
                    span.last_ts = ts if span.last_ts is None else max(span.last_ts, ts)
        for d in dumps:
            try:
                tied = _tie(gen, segs, d, start)
            except SegmentError as exc:
                span.problem = str(exc)
                continue
            if tied is not None:
                span.bases.append(tied)
        out.append(span)
    return out


def describe(backup_path: Path, source: str = "mysql") -> dict:
    """The restorable range for list/status: from the oldest tied dump to the newest commit."""
    gens = []
    for s in spans(backup_path, source):
        if not s.bases:
            continue
        oldest = min(b.point for b in s.bases)
        newest = max(s.last_ts or oldest, oldest)
        gens.append({"id": s.generation.id, "reason": s.generation.info.get("reason"),
                     "oldest": oldest, "newest": newest, "entries": s.entries,
                     "dumps": [b.snapshot for b in s.bases], "problem": s.problem,
                     "bytes": s.generation.bytes()})
    return {"generations": gens,
            "oldest": min((g["oldest"] for g in gens), default=None),
            "newest": max((g["newest"] for g in gens), default=None)}


@dataclass
class PitrPlan:
    generation: Generation
    base: Tied
    stop: float  # replay transactions stamped < stop (math.inf: all)
    at: float | None

    def describe(self) -> str:
        upto = ("its newest commit" if self.at is None else
                f"the end of second {format_time(self.stop - 1)}")
        return (f"dump of snapshot {self.base.snapshot} (binlog {self.base.file}:{self.base.pos}), "
                f"then the archived binlog of generation {self.generation.id} up to {upto}")


def _caught_up(backup_path: Path, source: str, gen: Generation) -> float | None:
    """Until when the running archiver had everything the server had (its status.json)."""
    st = archive_status.read_status(backup_path, source)
    if not st:
        return None
    if st.get("generation") != gen.id or st.get("stalled") or st.get("bytes_behind") not in (0, None):
        return None
    if st.get("pending") or not st.get("streaming"):
        return None
    return float(st["updated"]) - 1.0  # one poll and publish interval of slack


def plan(backup_path: Path, at: float | None, source: str = "mysql") -> PitrPlan:
    """The newest dump at or before `at` (None: the newest commit) and the generation to replay."""
    stop = math.floor(at) + 1 if at is not None else math.inf
    best: tuple[float, GenerationSpan, Tied] | None = None
    reasons = []
    for s in spans(backup_path, source):
        reach = max((t for t in (s.last_ts, _caught_up(backup_path, source, s.generation))
                     if t is not None), default=None)
        if at is not None and (reach is None or reach < math.floor(at)):
            reasons.append(f"generation {s.generation.id} reaches only "
                           f"{format_time(reach) if reach is not None else 'nothing'}")
            continue
        for b in s.bases:
            if b.point < stop and (best is None or b.point >= best[0]):
                best = (b.point, s, b)
    if best is None:
        rng = describe(backup_path, source)
        raise RunFailed(f"mysql: no dump and archived binlog reach {format_time(at)}: restorable "
                        f"from {format_time(rng['oldest'])} to {format_time(rng['newest'])} "
                        f"({'; '.join(reasons) or 'no archive generation has a dump tied to it'})")
    _, span, base = best
    if span.problem:
        log.warning("mysql: archive generation %s: %s", span.generation.id, span.problem)
    return PitrPlan(span.generation, base, stop, at)


def format_time(t: float | None) -> str:
    if t is None:
        return "latest"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pieces(p: PitrPlan, counter: dict) -> Iterator[ReplayPiece]:
    """The format descriptions and transactions to replay, gaps refused."""
    fdes: dict[str, bytes] = {}
    sent_fde: str | None = None
    prev: dict | None = None
    for entry in p.generation.iter_entries(p.base.fde_seq - 1):
        meta = entry.meta
        if meta.get("kind") == "file":
            fdes[meta["file"]] = entry.data
            continue
        if entry.seq <= p.base.after_seq:
            prev = meta
            continue
        if meta["ts"] >= p.stop:
            return
        if prev is not None and prev["file"] == meta["file"] and prev["end"] != meta["pos"]:
            raise RunFailed(f"mysql: the archive has a gap in {meta['file']} between {prev['end']} and "
                            f"{meta['pos']}: it can restore only to {prev['ts']}")
        if sent_fde != meta["file"]:
            if meta["file"] not in fdes:
                raise RunFailed(f"mysql: the archive lacks the format description of {meta['file']}")
            yield ReplayPiece("file", fdes[meta["file"]])
            sent_fde = meta["file"]
        counter["entries"] = counter.get("entries", 0) + 1
        counter["last_ts"] = meta["ts"]
        prev = meta
        yield ReplayPiece("trx", entry.data, meta["ts"])


def check_tables(client: MysqlClient, database: str) -> tuple[dict[str, int], list[str]]:
    """Row counts of every base table of `database`, and what CHECK TABLE found wrong."""
    tables = [r[0] for r in client.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND "
        f"TABLE_SCHEMA = {quote_str(database)} ORDER BY TABLE_NAME", what="list restored tables")]
    if not tables:
        return {}, [f"database {database} has no tables after the restore"]
    union = " UNION ALL ".join(f"SELECT {quote_str(t)}, COUNT(*) FROM {quote_ident(database)}."
                               f"{quote_ident(t)}" for t in tables)
    counts = {t: int(n) for t, n in client.query(union, what="count restored rows")}
    rows = client.query("CHECK TABLE " + ", ".join(f"{quote_ident(database)}.{quote_ident(t)}"
                                                   for t in tables), what="check restored tables")
    bad = [f"{r[0]}: {r[3]}" for r in rows if len(r) >= 4 and r[2].lower() in ("error", "status")
           and r[3] != "OK"]
    return counts, bad


def restore_at(client: MysqlClient, tools: Tools, backup_path: Path, at: float | None, *,
               source_db: str, target_db: str, load_dump: Callable[[str], dict],
               source: str = "mysql", unlogged: bool = False) -> dict:
    """Load the chosen dump into `target_db`, replay the archive to `at`, check the result
    (unlogged: the replay stays out of the server's binary log; `load_dump` decides for itself)."""
    p = plan(backup_path, at, source)
    log.info("mysql: restoring %s as at %s: %s", target_db, format_time(at), p.describe())
    t0 = time.monotonic()
    loaded = load_dump(p.base.snapshot)
    t1 = time.monotonic()
    counter: dict = {}
    stream = pieces(p, counter)
    head: list[ReplayPiece] = []
    for piece in stream:  # up to the first transaction: is there anything to replay at all?
        head.append(piece)
        if piece.kind == "trx":
            break
    if any(piece.kind == "trx" for piece in head):
        replayed = replay(client, tools, itertools.chain(head, stream), source_db=source_db,
                          target_db=target_db, stop=None if math.isinf(p.stop) else p.stop,
                          unlogged=unlogged)
    else:  # the dump is the newest state the archive knows
        replayed = {"transactions": 0, "bytes": 0, "last_timestamp": None, "seconds": 0.0}
    t2 = time.monotonic()
    counts, bad = check_tables(client, target_db)
    if bad:
        raise RunFailed(f"mysql: database {target_db} after the replay fails CHECK TABLE: "
                        + "; ".join(bad))
    return {"kind": "mysql", "target": target_db, "at": format_time(at), "snapshot": p.base.snapshot,
            "generation": p.generation.id, "start": f"{p.base.file}:{p.base.pos}",
            "transactions": replayed["transactions"], "binlog_bytes": replayed["bytes"],
            "last_commit": format_time(counter.get("last_ts")), "row_counts": counts,
            "dump_seconds": round(t1 - t0, 3), "replay_seconds": round(t2 - t1, 3),
            "seconds": round(time.monotonic() - t0, 3), "loaded": loaded}


def random_point(backup_path: Path, source: str = "mysql", rng: random.Random | None = None) -> float | None:
    """A random whole second of the newest generation's restorable range (None: no range)."""
    gens = [g for g in describe(backup_path, source)["generations"] if not g["problem"]]
    if not gens:
        return None
    g = gens[-1]
    lo, hi = math.ceil(g["oldest"]), math.floor(g["newest"])
    if hi < lo:
        return float(hi)
    return float((rng or random.SystemRandom()).randint(lo, hi))
