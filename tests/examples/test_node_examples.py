"""The Node examples (examples/node, @grpc/grpc-js + @grpc/proto-loader) against a real spindled."""

from __future__ import annotations

import shutil

import pytest

from conftest import EXAMPLES, REPO, last_line, run_example

NODE = shutil.which("node")


@pytest.fixture(scope="module", autouse=True)
def node_tools():
    assert NODE, "node is not installed: run scripts/install-deps"
    assert (REPO / "tools" / "node_modules" / "@grpc" / "grpc-js").is_dir(), \
        "@grpc/grpc-js is not installed in tools/: run scripts/install-deps"


def test_lock(spindled):
    proc = run_example([NODE, str(EXAMPLES / "node" / "lock.js"), "--address", spindled.address], spindled)
    assert last_line(proc) == "node lock: 4 processes x 10 increments = 40 (exact)"


def test_queue(spindled):
    proc = run_example([NODE, str(EXAMPLES / "node" / "queue.js"), "--address", spindled.address], spindled)
    assert last_line(proc) == "node queue: 50 items, 50 received once each, 50 acked"
