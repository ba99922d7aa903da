"""Fixtures for the example and Python-helper tests: a real spindled on ephemeral loopback ports.

Environment (set by ctest, tests/examples/CMakeLists.txt): SPINDLED (the binary), SPINDLE_PROTOS,
SPINDLE_REPO (the source tree), SPINDLE_STUBS_CACHE (where the helper caches its stubs),
SPINDLE_GO_GOPATH (GOPATH for the Go examples' generated stubs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

REPO = Path(os.environ.get("SPINDLE_REPO", Path(__file__).resolve().parents[2]))
EXAMPLES = REPO / "examples"
PYTHON = "/usr/bin/python3"

# The helper package itself, for the unit tests.
sys.path.insert(0, str(REPO / "python"))


class Spindled:
    """One spindled process on ephemeral loopback ports; its stderr is kept for failure reports."""

    def __init__(self, *flags: str) -> None:
        binary = os.environ.get("SPINDLED") or str(REPO / "build" / "services" / "spindled")
        self.proc = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.logs: List[str] = []
        self.address: Optional[str] = None
        self._listening = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._listening.wait(30) or self.address is None:
            self.stop()
            raise RuntimeError("spindled did not listen:\n" + "".join(self.logs))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.logs.append(line)
            match = re.search(r"event=listening address=(\S+)", line)
            if match:
                self.address = match.group(1)
                self._listening.set()
        self._listening.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture(scope="module")
def spindled() -> Iterator[Spindled]:
    server = Spindled()
    yield server
    server.stop()


def run_example(argv: List[str], spindled: Spindled, *, timeout: float = 120,
                env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs one example program against ``spindled``; returns it with text output."""
    full_env = dict(os.environ, SPINDLE_ADDRESS=spindled.address or "", **(env or {}))
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=full_env, cwd=str(REPO))


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The program's last non-empty stdout line, with its output quoted when it failed."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert lines, f"no output; stderr:\n{proc.stderr}"
    return lines[-1]
