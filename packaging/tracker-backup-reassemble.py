#!/usr/bin/python3
"""Reassemble a tracker-backup page-layout snapshot into a plain SQLite file.

    tracker-backup-reassemble.py BACKUP_PATH/ID OUTPUT.db

Needs only python3 and zstd: the python3-zstandard module if installed, else
the `zstd` command. Implements docs/format.md ("Page store"): it reads the
snapshot's page index, decompresses every object it names once, checks each
object's SHA-256 against its name, writes every page where the index puts it
and checks the whole result against the index's pages_digest. Exit 0 only if
everything matched; the output file is removed otherwise.
"""

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path


def decompress(path):
    try:
        import zstandard
    except ImportError:
        return subprocess.run(["zstd", "-d", "-c", "-q", str(path)], check=True,
                              stdout=subprocess.PIPE).stdout  # skips the skippable frame
    with open(path, "rb") as fh:
        data = fh.read()
    if struct.unpack_from("<I", data)[0] & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
        data = data[8 + struct.unpack_from("<I", data, 4)[0]:]
    return zstandard.ZstdDecompressor().stream_reader(data).read()


def main(snapshot, output):
    snapshot = Path(snapshot)
    manifest = json.loads((snapshot / "MANIFEST.json").read_text())
    source = manifest["sources"]["sqlite"]
    if source.get("layout") != "pages":
        sys.exit(f"{snapshot}: not a page-layout snapshot (use zstd -d on its .db.zst)")
    index = decompress(snapshot / source["index"])
    nl = index.index(b"\n")
    head = json.loads(index[:nl])
    ps, count = head["page_size"], head["page_count"]
    n_obj, n_runs = head["objects"], head["runs"]
    body = index[nl + 1:]
    objects = [body[32 * k:32 * k + 32].hex() for k in range(n_obj)]
    runs_by_object = {}
    page = 1
    for i in range(n_runs):
        length, obj, slot = struct.unpack_from("<III", body, 32 * n_obj + 12 * i)
        runs_by_object.setdefault(obj, []).append((page, length, slot))
        page += length
    if page - 1 != count:
        sys.exit(f"index covers {page - 1} pages, expected {count}")
    store = snapshot.parent / "pages" / "objects"
    digests = bytearray(16 * count)
    fd = os.open(output, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, ps * count)
        for obj, runs in runs_by_object.items():
            name = objects[obj]
            pages = decompress(store / name[:2] / name)
            if hashlib.sha256(pages).hexdigest() != name:
                raise SystemExit(f"object {name} is damaged (SHA-256 does not match its name)")
            for first, length, slot in runs:
                part = pages[slot * ps:(slot + length) * ps]
                os.pwrite(fd, part, (first - 1) * ps)
                for i in range(length):
                    d = hashlib.sha256(part[i * ps:(i + 1) * ps]).digest()[:16]
                    digests[(first - 1 + i) * 16:(first + i) * 16] = d
        if hashlib.sha256(digests).hexdigest() != head["pages_digest"]:
            raise SystemExit("the reassembled pages do not match pages_digest")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(output)
        raise
    os.close(fd)
    print(f"{output}: {count} pages of {ps} bytes from {len(runs_by_object)} objects, all checked")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1], sys.argv[2])
