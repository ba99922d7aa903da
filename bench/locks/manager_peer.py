#!/usr/bin/python3
"""The multiprocessing.Manager peer of the lock benchmarks (bench/locks/run.py).

    manager_peer.py --clients N [--contended] [--warmup-s 1] [--duration-s 4] [--max-ops N]

Starts a SyncManager subclass (standard library only) on a free 127.0.0.1 TCP port whose
`named_lock(name)` returns a proxy (AcquirerProxy) to one threading.Lock per name, kept in the
manager's process: the way Python programs share named locks between processes without a
server of their own. TCP rather than the default AF_UNIX socket, like every other peer here and
like Spindle's clients (loopback, one connection per client). Then forks N client processes; each
connects, takes its proxy (its own name, or one shared name with --contended) and runs
acquire()+release() pairs until the window closes. Every pair is two round trips to the manager,
as Spindle's unary Acquire+Release is two gRPC calls.

Prints one JSON object like bench_locks: {"mode","clients","contended","ops","seconds","rate",
"p50_us","p90_us","p99_us"}; an op is one acquire+release pair, latencies are of the acquire.
"""
import argparse
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
from multiprocessing.managers import AcquirerProxy, SyncManager

_locks = {}
_locks_guard = threading.Lock()


def _named_lock(name):
    """Runs in the manager's process: the one lock of `name`, created on first use."""
    with _locks_guard:
        lock = _locks.get(name)
        if lock is None:
            lock = _locks[name] = threading.Lock()
        return lock


class LockManager(SyncManager):
    pass


LockManager.register("named_lock", callable=_named_lock, proxytype=AcquirerProxy)

MAX_SAMPLES = 200_000


def client(index, address, authkey, contended, start, end, max_ops, barrier, results):
    """One client process: pairs counted when they begin inside [start, end)."""
    try:
        manager = LockManager(address=address, authkey=authkey)
        manager.connect()
        lock = manager.named_lock("bench/lock" if contended else f"bench/lock/{index}")
        barrier.wait(timeout=60)
        window_start = start.value
        window_end = window_start + end
        ops = 0
        samples = []
        while True:
            began = time.monotonic()
            if began >= window_end or ops >= max_ops:
                break
            lock.acquire()
            acquired = time.monotonic()
            lock.release()
            if began >= window_start:
                ops += 1
                if len(samples) < MAX_SAMPLES:
                    samples.append(acquired - began)
        results.put((index, ops, samples, None))
    except Exception as e:  # reported to the parent, which fails the run
        results.put((index, 0, [], f"{type(e).__name__}: {e}"))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--contended", action="store_true")
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--duration-s", type=float, default=4.0)
    parser.add_argument("--max-ops", type=int, default=10_000_000)
    args = parser.parse_args()
    clients = max(1, min(256, args.clients))
    duration = max(0.1, min(600.0, args.duration_s))

    ctx = multiprocessing.get_context("fork")
    authkey = os.urandom(16)
    manager = LockManager(address=("127.0.0.1", 0), authkey=authkey, ctx=ctx)
    manager.start()
    procs = []
    try:
        barrier = ctx.Barrier(clients + 1)
        start = ctx.Value("d", 0.0, lock=False)
        results = ctx.Queue()
        for i in range(clients):
            p = ctx.Process(target=client, args=(i, manager.address, authkey, args.contended, start,
                                                 duration, args.max_ops, barrier, results))
            p.start()
            procs.append(p)
        # Every client is connected: the warm-up starts now, the window after it.
        start.value = time.monotonic() + args.warmup_s
        barrier.wait(timeout=60)
        ops, samples, errors = 0, [], []
        deadline = time.monotonic() + args.warmup_s + duration + 60
        for _ in range(clients):
            try:
                _, n, s, error = results.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                errors.append("a client did not report in time")
                break
            ops += n
            samples.extend(s)
            if error:
                errors.append(error)
        if errors:
            sys.exit(f"manager_peer: {errors[0]}")
        samples.sort()

        def pct(p):
            return samples[min(len(samples) - 1, int(p * len(samples)))] * 1e6 if samples else 0.0

        print(json.dumps({"mode": "manager", "clients": clients, "contended": args.contended,
                          "ops": ops, "seconds": round(duration, 3),
                          "rate": round(ops / duration, 1), "p50_us": round(pct(0.5)),
                          "p90_us": round(pct(0.9)), "p99_us": round(pct(0.99))}), flush=True)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        manager.shutdown()


if __name__ == "__main__":
    main()
