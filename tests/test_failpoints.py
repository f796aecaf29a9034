"""A failpoint kills its process once, where it stands, and only when armed with a mark."""

import os
import signal
import subprocess
import sys

from recprep.failpoints import ENV, MARK_ENV

REACH = "from recprep.failpoints import failpoint; failpoint('here'); print('passed')"


def _reach(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in (ENV, MARK_ENV)} | env
    return subprocess.run(
        [sys.executable, "-c", REACH], env=environ, capture_output=True, text=True, timeout=60
    )


def test_an_armed_failpoint_kills_the_first_process_once_and_marks_it(tmp_path):
    mark = tmp_path / "fired"
    first = _reach(**{ENV: "here", MARK_ENV: str(mark)})
    assert first.returncode == -signal.SIGKILL and "passed" not in first.stdout
    name, pid = mark.read_text().split()
    assert name == "here" and int(pid) > 0
    again = _reach(**{ENV: "here", MARK_ENV: str(mark)})  # the restarted process goes on
    assert again.returncode == 0 and again.stdout.strip() == "passed"


def test_an_unarmed_other_or_unmarked_failpoint_does_nothing(tmp_path):
    assert _reach().stdout.strip() == "passed"
    assert _reach(**{ENV: "elsewhere", MARK_ENV: str(tmp_path / "m")}).stdout.strip() == "passed"
    assert _reach(**{ENV: "here"}).stdout.strip() == "passed"
    assert not (tmp_path / "m").exists()
