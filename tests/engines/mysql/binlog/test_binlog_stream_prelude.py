"""The stream prelude (RAW_TO_STDOUT): the binlog tool never outlives the agent's hold on it.

`docker exec` leaves a process running when its client goes away, so the
prelude itself ends the tool when its standard input reaches end of file.
Run here with `sh` and a stand-in tool (a shell loop writing to the
symlinked binlog name), which is all the prelude sees of the real one.
"""

from __future__ import annotations

import subprocess
import time

from tracker_backup.engines.mysql.binlog.stream import RAW_TO_STDOUT

TOOL = ["sh", "-c", 'while :; do echo event >> binlog.000007; sleep 0.05; done']


def start(tmp_path) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", RAW_TO_STDOUT, "raw-to-stdout", "42", "binlog", "7", "2",
                             *TOOL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_the_tool_writes_its_binlog_files_to_standard_output(tmp_path):
    proc = start(tmp_path)
    try:
        assert proc.stdout.readline() == b"event\n"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_closing_standard_input_ends_the_tool_and_the_prelude(tmp_path):
    proc = start(tmp_path)
    assert proc.stdout.readline() == b"event\n"
    started = time.monotonic()
    proc.stdin.close()
    assert proc.wait(timeout=10) != 0  # the tool was ended, not finished
    assert time.monotonic() - started < 5
    proc.stdout.read()  # end of file: no process is left holding the pipe
    out = subprocess.run(["pgrep", "-f", "binlog.000007"], capture_output=True, text=True)
    assert out.stdout == "", out.stdout


def test_the_tool_ending_by_itself_ends_the_prelude_with_its_status(tmp_path):
    proc = subprocess.Popen(["sh", "-c", RAW_TO_STDOUT, "raw-to-stdout", "42", "binlog", "7", "2",
                             "sh", "-c", "exit 3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    # stdin stays open (the agent still holds it): the watcher must not keep us alive
    assert proc.wait(timeout=10) == 3
    proc.stdin.close()
