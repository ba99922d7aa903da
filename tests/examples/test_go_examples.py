"""The Go examples (examples/go, GOPATH mode, stubs generated into $SPINDLE_GO_GOPATH by run.sh)
against a real spindled."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from conftest import EXAMPLES, last_line, run_example

RUN = str(EXAMPLES / "go" / "run.sh")


def go_env():
    """Go needs a build cache directory; give it one when the environment names none."""
    if any(os.environ.get(v) for v in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        return {}
    base = os.environ.get("SPINDLE_GO_GOPATH") or tempfile.gettempdir()
    return {"GOCACHE": str(Path(base).parent / "go-build-cache")}


def test_go_toolchain_present():
    for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        assert shutil.which(tool), f"{tool} is not installed: run scripts/install-deps"


def test_lock(spindled):
    # The first build compiles grpc-go from /usr/share/gocode: allow for it.
    proc = run_example([RUN, "lock", "-address", spindled.address], spindled, timeout=240, env=go_env())
    assert last_line(proc) == "go lock: 4 clients x 10 increments = 40 (exact)"


def test_queue(spindled):
    proc = run_example([RUN, "queue", "-address", spindled.address], spindled, timeout=240, env=go_env())
    assert last_line(proc) == "go queue: 50 items, 50 received once each, 50 acked"
