"""The WORKER pool runtime (python/spindle_worker.py) speaks its framing correctly: every frame it
sends arrives whole in one write, also when stdout is a raw stream (`python -u`,
PYTHONUNBUFFERED=1), and a worker started for real under PYTHONUNBUFFERED=1 answers every task.
"""
import importlib.util
import io
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "python", "spindle_worker.py")
HEADER = struct.Struct(">cI")


def _load_worker():
    spec = importlib.util.spec_from_file_location("spindle_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingRaw(io.RawIOBase):
    """A raw (unbuffered) stream that keeps every write call's bytes apart."""

    def __init__(self):
        self.writes = []

    def writable(self):
        return True

    def write(self, b):
        self.writes.append(bytes(b))
        return len(b)


def _frame(kind, payload):
    return HEADER.pack(kind, len(payload)) + payload


def test_each_frame_is_one_write_on_a_raw_stdout():
    worker = _load_worker()
    stdin = io.BytesIO(_frame(b"T", b"alpha") + _frame(b"T", b"") + _frame(b"T", b"x" * 70000))
    stdout = RecordingRaw()
    saved = sys.stdout
    try:
        worker.serve(lambda payload: payload, stdin=stdin, stdout=stdout)
    finally:
        sys.stdout = saved
    data = b"".join(stdout.writes)
    assert data == (_frame(b"R", b"") + _frame(b"O", b"alpha") + _frame(b"O", b"") +
                    _frame(b"O", b"x" * 70000))
    # The ready frame and the two small results: one write each (a frame larger than the buffer
    # may take more than one).
    assert stdout.writes[:3] == [_frame(b"R", b""), _frame(b"O", b"alpha"), _frame(b"O", b"")]


def test_unbuffered_worker_process_answers_every_task():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tasks = [str(i).encode() * (i % 7) for i in range(200)]
    stdin = b"".join(_frame(b"T", t) for t in tasks)
    done = subprocess.run(["/usr/bin/python3", WORKER, "echo"], input=stdin, env=env,
                          capture_output=True, timeout=60, check=True)
    expected = _frame(b"R", b"") + b"".join(_frame(b"O", t) for t in tasks)
    assert done.stdout == expected
