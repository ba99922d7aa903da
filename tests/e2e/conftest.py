"""Fixtures for the end-to-end tests: the real spindled binary, driven by clients nobody here wrote
(Python's grpcio with stubs generated from protos/, and the buf CLI over server reflection).

Environment (set by ctest): SPINDLED (binary path), SPINDLE_PROTOS (protos/ dir),
GRPC_PROTO_ROOT (Debian's grpc-proto root), BUF (buf binary).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest


def _generate_stubs(out_dir):
    """Python stubs from protos/ with Debian's protoc and grpc_python_plugin (python3-grpc-tools
    bundles a protoc too old for proto3 `optional`)."""
    protos = os.environ["SPINDLE_PROTOS"]
    grpc_root = os.environ["GRPC_PROTO_ROOT"]
    files = [os.path.join("spindle/v1", f) for f in sorted(os.listdir(os.path.join(protos, "spindle/v1")))
             if f.endswith(".proto")]
    # grpc.health.v1 is compiled as the top-level module `health_pb2`: a `grpc/` package of our
    # own would shadow grpcio's.
    health_dir = os.path.join(out_dir, "_health")
    os.makedirs(health_dir)
    shutil.copy(os.path.join(grpc_root, "grpc/health/v1/health.proto"), health_dir)
    for root, sources in ((protos, files), (health_dir, ["health.proto"])):
        subprocess.run(["protoc", f"-I{root}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", *sources],
                       check=True)


@pytest.fixture(scope="session")
def stubs():
    out = tempfile.mkdtemp(prefix="spindle-stubs-")
    _generate_stubs(out)
    sys.path.insert(0, out)
    return out


class Spindled:
    """One spindled process on ephemeral loopback ports."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen(
            [os.environ["SPINDLED"], "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.logs = []
        self._listening = threading.Event()
        self.address = self.metrics_address = None
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._listening.wait(30):
            self.stop()
            raise RuntimeError("spindled did not listen:\n" + "".join(self.logs))

    def _drain(self):
        for line in self.proc.stderr:
            self.logs.append(line)
            m = re.search(r"event=listening address=(\S+) metrics_address=(\S+)", line)
            if m:
                self.address, self.metrics_address = m.group(1), m.group(2)
                self._listening.set()
        self._listening.set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(30)
        return self.proc.returncode


@pytest.fixture
def spindled():
    server = Spindled()
    yield server
    server.stop()


@pytest.fixture
def channel(spindled, stubs):
    import grpc
    with grpc.insecure_channel(spindled.address) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield ch


def buf(*args, timeout=60):
    """Runs buf; returns the CompletedProcess."""
    return subprocess.run([os.environ["BUF"], *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
