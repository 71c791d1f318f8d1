"""procs.py directly: commands run without a shell, secrets stay out of children, failures say why."""

from __future__ import annotations

import sys

import pytest

from tracker_backup import procs
from tracker_backup.errors import RunFailed


def test_run_command_returns_stdout_and_passes_arguments_without_a_shell(tmp_path):
    out = procs.run_command([sys.executable, "-c", "import sys; print(sys.argv[1:])",
                             "a b", "$HOME;"], what="t")
    assert out.strip() == "['a b', '$HOME;']"


def test_run_command_failure_names_the_command_and_carries_its_stderr():
    with pytest.raises(RunFailed, match=r"\[sqlite\] stop_command: exited with status 3: boom"):
        procs.run_command([sys.executable, "-c", "import sys; sys.stderr.write('boom'); "
                           "sys.exit(3)"], what="[sqlite] stop_command")


def test_run_command_missing_tool_and_timeout_are_clear_errors(tmp_path):
    with pytest.raises(RunFailed, match="command not found: /nonexistent/tool"):
        procs.run_command(["/nonexistent/tool"], what="t")
    with pytest.raises(RunFailed, match="did not finish within 0.5s"):
        procs.run_command([sys.executable, "-c", "import time; time.sleep(30)"], what="t",
                          timeout=0.5)


def test_children_never_see_secret_variables_or_our_credentials(monkeypatch):
    monkeypatch.setenv("MYSQL_PWD", "secret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/x")
    monkeypatch.setenv("KEEP_ME", "yes")
    out = procs.run_command([sys.executable, "-c", "import os; print(sorted(os.environ))"],
                            what="t")
    assert "MYSQL_PWD" not in out and "CREDENTIALS_DIRECTORY" not in out
    assert "KEEP_ME" in out


def test_run_with_input_feeds_stdin_and_reports_status_and_stderr():
    code, out, err = procs.run_with_input(
        [sys.executable, "-c", "import sys; d = sys.stdin.buffer.read(); print(len(d)); "
         "sys.stderr.write('done'); sys.exit(4)"],
        what="t", feed=iter([b"x" * 1000, b"y" * 24]))
    assert (code, out.strip(), err) == (4, "1024", "done")


def test_run_tool_answers_or_returns_none_when_it_cannot_run():
    assert procs.run_tool([sys.executable, "-c", "print('hi'); raise SystemExit(2)"]) == (2, "hi\n")
    assert procs.run_tool(["/nonexistent/tool"]) is None
    assert procs.run_tool([sys.executable, "-c", "import time; time.sleep(30)"],
                          timeout=0.5) is None
