#!/usr/bin/env python3
"""spindle_worker: the worker side of a Spindle WORKER pool, standard library only.

A WORKER pool starts N copies of a command and sends each task's payload (bytes) to an idle one
as a frame on its stdin; the worker answers with one frame on its stdout. Run a function as a
worker with

    python3 spindle_worker.py mymodule:handle          # handle(payload: bytes) -> bytes | str
    python3 -m spindle_worker mymodule:handle           # when on PYTHONPATH

or from your own script:

    import spindle_worker
    def handle(payload: bytes) -> bytes:
        return payload.upper()
    spindle_worker.serve(handle)

Framing (docs/api/pools.md): every frame is 1 type byte, a 4-byte big-endian payload length, and
the payload. The worker sends b'R' (ready) once, then for every b'T' (task) frame it receives it
answers with b'O' (result) or b'E' (error text, e.g. a traceback). EOF on stdin means "exit".
While serving, sys.stdout is redirected to stderr so that print() cannot corrupt the framing.

Built-in handlers for tests and benchmarks (no module needed): "echo" (returns the payload),
"sleep_ms" (payload = decimal milliseconds), "fail" (raises with the payload as the message),
"pid" (returns the worker's pid), "crash" (exits at once without answering).
"""

import importlib
import io
import os
import struct
import sys
import time
import traceback

_HEADER = struct.Struct(">cI")


def _read_exact(stream, n):
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write_frame(stream, kind, payload):
    # One buffered frame, one flush: the pool reads it with one wake-up.
    stream.write(_HEADER.pack(kind, len(payload)))
    stream.write(payload)
    stream.flush()


def serve(handler, stdin=None, stdout=None):
    """Runs the worker loop until stdin closes. `handler(payload: bytes)` returns bytes or str."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    if isinstance(stdout, io.RawIOBase):
        # `python -u` or PYTHONUNBUFFERED=1 make sys.stdout.buffer a raw stream: each write is a
        # syscall that may write only part of its bytes. Buffer it, so a frame is written whole
        # and at once.
        stdout = io.BufferedWriter(stdout)
    sys.stdout = sys.stderr  # print() must not write into the framing.
    _write_frame(stdout, b"R", b"")
    while True:
        header = _read_exact(stdin, _HEADER.size)
        if header is None:
            return
        kind, length = _HEADER.unpack(header)
        payload = _read_exact(stdin, length) if length else b""
        if payload is None:
            return
        if kind != b"T":
            continue
        try:
            result = handler(payload)
            if result is None:
                result = b""
            elif isinstance(result, str):
                result = result.encode()
            _write_frame(stdout, b"O", bytes(result))
        except Exception:  # noqa: BLE001 - every failure goes back as an error frame
            _write_frame(stdout, b"E", traceback.format_exc().encode())


def _builtin(name):
    if name == "echo":
        return lambda payload: payload
    if name == "sleep_ms":
        def sleep_ms(payload):
            time.sleep(int(payload or b"0") / 1000.0)
            return payload
        return sleep_ms
    if name == "fail":
        def fail(payload):
            raise RuntimeError(payload.decode(errors="replace"))
        return fail
    if name == "pid":
        return lambda payload: str(os.getpid())
    if name == "crash":
        def crash(payload):
            os._exit(3)
        return crash
    return None


def load(spec):
    """Resolves "module:function" or a built-in name to a callable."""
    builtin = _builtin(spec)
    if builtin is not None:
        return builtin
    module_name, _, function_name = spec.partition(":")
    if not function_name:
        raise SystemExit(f"spindle_worker: expected module:function, got {spec!r}")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def main(argv):
    if len(argv) != 2:
        print("usage: spindle_worker.py module:function | echo | sleep_ms | fail | pid | crash",
              file=sys.stderr)
        return 2
    serve(load(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
