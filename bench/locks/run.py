#!/usr/bin/python3
"""Lock benchmarks for bench/run: Spindle's locks side by side with Redis and a bare gRPC echo.

    bench/locks/run.py --build-dir DIR [--json FILE] [--quick]

Builds nothing: takes spindled and bench_locks from DIR. Starts spindled (metrics off) and
redis-server (--save '' --appendonly no) on free loopback ports, then runs every scenario against
Spindle and its peer alternately in the same run. Prints one JSON object per result:
{"group","name","clients","unit","spindle","peer","peer_value","ratio","target","met"}.
For rates "ratio" is Spindle / peer (higher is better); for latencies it is peer / Spindle (so
again higher is better). etcd's lock API is not measured (see docs/api/locks.md).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_load(binary, target, address, mode, clients, contended, warmup, duration):
    cmd = [binary, "--target", target, "--address", address, "--mode", mode, "--clients",
           str(clients), "--warmup-s", str(warmup), "--duration-s", str(duration)]
    if contended:
        cmd.append("--contended")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=warmup + duration + 90)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[:500]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    spindled = os.path.join(args.build_dir, "services", "spindled")
    load = os.path.join(args.build_dir, "bench", "locks", "bench_locks")
    for path in (spindled, load):
        if not os.access(path, os.X_OK):
            sys.exit(f"locks: {path} is missing; build spindled and bench_locks first")
    redis_bin = shutil.which("redis-server")
    warmup, duration = (0.5, 1.5) if args.quick else (1.0, 4.0)

    procs = []
    results = []
    try:
        port = free_port()
        server = subprocess.Popen([spindled, "--listen", f"127.0.0.1:{port}", "--metrics-listen", "",
                                   "--log-level", "warn"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(server)
        wait_port(port, server)
        spindle = f"127.0.0.1:{port}"

        redis = None
        if redis_bin:
            rport = free_port()
            workdir = tempfile.mkdtemp(prefix="spindle-bench-redis-")
            rproc = subprocess.Popen([redis_bin, "--port", str(rport), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", workdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(rproc)
            wait_port(rport, rproc)
            redis = f"127.0.0.1:{rport}"

        def emit(name, clients, unit, value, peer, peer_value, ratio, target, met):
            row = {"group": "locks", "name": name, "clients": clients, "unit": unit,
                   "spindle": round(value, 1), "peer": peer,
                   "peer_value": None if peer_value is None else round(peer_value, 1),
                   "ratio": None if ratio is None else round(ratio, 3), "target": target,
                   "met": met}
            results.append(row)
            print(json.dumps(row), flush=True)

        def vs_redis(name, mode, clients, contended, target=None, check=None, latency=True):
            s = run_load(load, "spindle", spindle, mode, clients, contended, warmup, duration)
            r = run_load(load, "redis", redis, "setnx", clients, contended, warmup, duration) \
                if redis else None
            ratio = s["rate"] / r["rate"] if r and r["rate"] else None
            emit(f"{name} ({mode})", clients, "pairs/s", s["rate"], "redis SET NX PX + DEL",
                 r["rate"] if r else None, ratio, target,
                 None if check is None or ratio is None else check(ratio))
            if latency:
                for p in ("p50", "p99"):
                    lr = r[f"{p}_us"] / s[f"{p}_us"] if r and s[f"{p}_us"] else None
                    emit(f"{name} ({mode}): {p} acquire latency", clients, "us", s[f"{p}_us"],
                         "redis SET NX PX", r[f"{p}_us"] if r else None, lr, None, None)
            return s

        def vs_echo(name, mode, clients, target, check):
            s = run_load(load, "spindle", spindle, mode, clients, False, warmup, duration)
            e = run_load(load, "spindle", spindle, "echo", clients, False, warmup, duration)
            ratio = s["rate"] / e["rate"] if e["rate"] else None
            emit(f"{name} ({mode})", clients, "pairs/s", s["rate"], "bare gRPC echo (2 x GetLimits)",
                 e["rate"], ratio, target, None if ratio is None else check(ratio))

        plan = [1, 16, 32] if not args.quick else [1, 32]
        for clients in plan:
            target = "ratio >= 0.5 (at 16)" if clients == 16 else None
            check = (lambda r: r >= 0.5) if clients == 16 else None
            vs_redis("uncontended acquire+release", "unary", clients, False, target, check)
            vs_redis("uncontended acquire+release", "stream", clients, False, target, check,
                     latency=False)
        for clients in ([1, 16] if not args.quick else [16]):
            vs_echo("uncontended acquire+release vs echo", "unary", clients,
                    "ratio >= 0.8 (within 1.25x)", lambda r: r >= 0.8)
        vs_redis("contended handoffs, one lock", "unary", 32, True)
        vs_redis("contended handoffs, one lock", "stream", 32, True, latency=False)
    finally:
        for proc in reversed(procs):
            stop(proc)

    if args.json:
        with open(args.json, "w") as f:
            for row in results:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
