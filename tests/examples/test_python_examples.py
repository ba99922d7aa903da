"""Every example in examples/python runs against a real spindled and prints its expected last line
(docs/EXAMPLES.md)."""

from __future__ import annotations

import re

import pytest

from conftest import EXAMPLES, PYTHON, last_line, run_example

# example -> a regular expression its last line must match in full.
EXPECTED = {
    "pool_callbacks.py": r"pool: 10/10 tasks succeeded, callbacks 10, sum of squares 285",
    "queue_processes.py": r"queue: 100 items put by 2 writers, received by 2 readers, each exactly once",
    "tickets.py": r"tickets: with a lock 100 sold, 0 left \(exact\)",
    "shared_state.py": r"shared: hits=100 seconds=50\.0 slots=\[25, 25, 25, 25\] cas_total=100 workers=4",
    "barrier.py": r"barrier: 5 parties x 3 rounds, each round released together \(generations 0-2\)",
    "fetch_urls.py": r"fetch: 9 URLs, 8 x 200, 1 x 404, 0 errors, bodies match",
    "distributed.py": r"distributed: 30 tasks, 30 results, sum of squares 9455",
}


def test_every_example_is_checked():
    found = {p.name for p in (EXAMPLES / "python").glob("*.py") if not p.name.startswith("_")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example(spindled, example):
    proc = run_example([PYTHON, str(EXAMPLES / "python" / example), "--address", spindled.address],
                       spindled)
    assert re.fullmatch(EXPECTED[example], last_line(proc)), proc.stdout


def test_tickets_reports_the_unlocked_race(spindled):
    proc = run_example([PYTHON, str(EXAMPLES / "python" / "tickets.py")], spindled)  # via SPINDLE_ADDRESS
    last_line(proc)
    match = re.search(r"without a lock: 100 sold, (\d+) left \(\1 updates lost\)", proc.stdout)
    assert match, proc.stdout
    assert 0 <= int(match.group(1)) < 100


def test_queue_example_counts_every_item(spindled):
    proc = run_example([PYTHON, str(EXAMPLES / "python" / "queue_processes.py"), "--address", spindled.address],
                       spindled)
    last_line(proc)
    counts = [int(n) for n in re.findall(r"reader \d received (\d+) items", proc.stdout)]
    assert sum(counts) == 100 and len(counts) == 2, proc.stdout
    assert "duplicates: 0, missing: 0" in proc.stdout


def test_unreachable_server_fails_cleanly(spindled):
    # A port nobody listens on: the example exits non-zero with spindle.Unavailable, within bounds.
    proc = run_example([PYTHON, str(EXAMPLES / "python" / "fetch_urls.py"), "--address", "127.0.0.1:1"],
                       spindled, timeout=60)
    assert proc.returncode != 0
    assert "UNAVAILABLE" in proc.stderr
