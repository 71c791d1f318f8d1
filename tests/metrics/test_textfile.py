"""The textfile is replaced atomically: a concurrent reader never sees half a file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracker_backup.metrics.textfile import write_textfile

# A reader process: reads the file as node_exporter does (open, read all) as fast as it can,
# counts versions seen and torn reads (a version must start with its BEGIN and end with its END).
READER = textwrap.dedent("""
    import json, os, sys, time
    path, stop = sys.argv[1], sys.argv[2]
    seen, torn, reads = set(), 0, 0
    while not os.path.exists(stop):
        try:
            with open(path) as fh:
                text = fh.read()
        except FileNotFoundError:
            continue
        reads += 1
        lines = text.splitlines()
        ok = (len(lines) >= 2 and lines[0].startswith("# BEGIN ")
              and lines[-1] == "# END " + lines[0][8:] and text.endswith("\\n")
              and len(lines) == int(lines[0].split()[3]) + 2)
        if ok:
            seen.add(lines[0])
        else:
            torn += 1
    print(json.dumps({"reads": reads, "versions": len(seen), "torn": torn}))
""")


def version_text(n: int) -> str:
    """Version n: a different length each time, so a mix of two versions shows."""
    count = 2000 + (n * 7919) % 3000
    body = "".join(f"tracker_backup_test_sample{{i=\"{i}\"}} {n}\n" for i in range(count))
    return f"# BEGIN {n} {count}\n{body}# END {n} {count}\n"


def naive_write(path: Path, text: str) -> None:
    """What not to do: truncate the target and write it in place, in two halves."""
    with open(path, "w") as fh:
        fh.write(text[: len(text) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        fh.write(text[len(text) // 2:])


def run_against_reader(tmp_path: Path, write, versions: int) -> dict:
    import json

    target = tmp_path / "tracker-backup.prom"
    write(target, version_text(0))
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        for n in range(1, versions + 1):
            write(target, version_text(n))
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    return json.loads(out)


def test_a_concurrent_reader_never_sees_a_torn_file(tmp_path):
    result = run_against_reader(tmp_path, write_textfile, versions=200)
    assert result["torn"] == 0, result
    assert result["reads"] > 100 and result["versions"] > 10, result  # it really raced the writer


def test_the_reader_does_catch_a_writer_that_is_not_atomic(tmp_path):
    """Control: the same reader finds torn files when the file is rewritten in place."""
    result = run_against_reader(tmp_path, naive_write, versions=200)
    assert result["torn"] > 0, result


def test_the_file_is_0644_whatever_the_umask_and_no_temporary_file_is_left(tmp_path):
    target = tmp_path / "tracker-backup.prom"
    old = os.umask(0o077)
    try:
        write_textfile(target, "a 1\n")
        write_textfile(target, "a 2\n")
    finally:
        os.umask(old)
    assert target.read_text() == "a 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracker-backup.prom"]


def test_a_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "tracker-backup.prom"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    leftover = tmp_path / f".tracker-backup.prom.tmp-{dead}"
    leftover.write_text("half")
    alive = tmp_path / f".tracker-backup.prom.tmp-{os.getppid()}"  # a live writer's: kept
    alive.write_text("in progress")
    write_textfile(target, "a 1\n")
    assert not leftover.exists() and alive.exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "tracker-backup.prom"
    write_textfile(target, "old 1\n")
    # A directory where the temporary file would go: open() fails.
    (tmp_path / f".tracker-backup.prom.tmp-{os.getpid()}").mkdir()
    with pytest.raises(OSError):
        write_textfile(target, "new 1\n")
    assert target.read_text() == "old 1\n"
