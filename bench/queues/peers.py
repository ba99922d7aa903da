"""Shared by bench/queues/run.py and bench/values/run.py: start spindled and redis-server on
loopback (each on a free port, persistence off), run the load generator, stop everything.

Nothing here builds: the binaries come from --build-dir.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spindled:
    """spindled on 127.0.0.1:<free port>, metrics off."""

    def __init__(self, build_dir):
        self.binary = os.path.join(build_dir, "services", "spindled")
        self.proc = None
        self.address = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.search(r"event=listening address=(\S+)", line)
            if m:
                self.address = m.group(1)
                # Keep draining stderr so spindled never blocks on a full pipe.
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return self
        self.__exit__(None, None, None)
        raise RuntimeError("spindled did not start")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Redis:
    """redis-server on 127.0.0.1:<free port>, no persistence."""

    def __init__(self):
        self.proc = None
        self.address = None
        self.dir = None

    def __enter__(self):
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        port = free_port()
        self.dir = tempfile.mkdtemp(prefix="spindle-bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        self.address = f"127.0.0.1:{port}"
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def load(build_dir, target, address, mode, clients, warmup, duration):
    """Runs the load generator once; returns its JSON result."""
    binary = os.path.join(build_dir, "bench", "queues", "bench_queues_load")
    cmd = [binary, "--target", target, "--address", address, "--mode", mode, "--clients",
           str(clients), "--warmup-s", str(warmup), "--duration-s", str(duration)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=warmup + duration + 60).stdout
    return json.loads(out.strip().splitlines()[-1])


def result(group, name, clients, unit, spindle, peer, peer_value, target=None, met=None):
    ratio = spindle / peer_value if peer_value else None
    return {"group": group, "name": name, "clients": clients, "unit": unit,
            "spindle": round(spindle, 1), "peer": peer,
            "peer_value": round(peer_value, 1) if peer_value is not None else None,
            "ratio": round(ratio, 3) if ratio is not None else None, "target": target,
            "met": met(ratio) if (met and ratio is not None) else None}
