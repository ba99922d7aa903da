#!/usr/bin/python3
"""Pool benchmarks for bench/run: tasks per second through Spindle's PoolService, side by side in
one run with Python's multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor.

    /usr/bin/python3 bench/pools/run.py --build-dir DIR [--json FILE] [--quick]

Starts spindled on loopback itself (metrics off); builds nothing (bench_pools_load and spindled
must be in DIR). Every pool has 2 workers; the Spindle WORKER pools run python/spindle_worker.py
(built-in "echo" / "sleep_ms") under /usr/bin/python3, the peers run the same work in functions of
this file under /usr/bin/python3 (fork start method). Each figure alternates Spindle and its peers
in the same run (full mode: 5 rounds, the median of each side). Figures (ratio = Spindle / peer):
  * trivial tasks/s, WORKER pool, streamed Map (ordered = `map`, window 256)
        vs ProcessPoolExecutor(2) submit+result          target >= 1.0x
        vs ProcessPoolExecutor(2).map                     target >= 1.0x
        vs multiprocessing.Pool(2).map chunksize=1        target >= 0.5x
  * trivial tasks/s, WORKER pool, SubmitTask+WaitTask, 16 clients
        vs ProcessPoolExecutor(2) submit+result          (no target; latency percentiles)
  * /bin/true tasks/s, COMMAND pool of 2, Map and SubmitTask+WaitTask (16 clients)
        vs multiprocessing.Pool(2).map(subprocess.run(["/bin/true"]), chunksize=1)  (no target)
  * 1 ms tasks/s (sleep 1 ms), WORKER pool, streamed Map
        vs multiprocessing.Pool(2).map chunksize=1        target >= 1.0x
        vs ProcessPoolExecutor(2) submit+result and .map  (no target)

The peers run in a fresh interpreter each (`run.py --peer KIND --work WORK`): a warm-up of the
same work, then a count sized from the warm-up rate to last about the measured duration (capped).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "queues"))

PYTHON = "/usr/bin/python3"
WORKER_SCRIPT = os.path.join(ROOT, "python", "spindle_worker.py")
MAP_WINDOW = 256
SUBMIT_CLIENTS = 16
MAX_TASKS = 2_000_000

# ---- the peers' work (module level so that the pools can pickle it) ----


def echo(x):
    return x


def sleep_1ms(x):
    time.sleep(0.001)
    return x


def run_true(x):
    return subprocess.run(["/bin/true"], check=False).returncode


WORK = {"echo": echo, "sleep1": sleep_1ms, "true": run_true}


def peer_main(kind, work, warmup, duration):
    """Runs one peer measurement in this (fresh) interpreter; prints {"rate", "count", "seconds"}."""
    import concurrent.futures
    import multiprocessing
    fn = WORK[work]
    ctx = multiprocessing.get_context("fork")

    def run_once(pool, n):
        if kind == "mp_map":
            out = pool.map(fn, range(n), chunksize=1)
        elif kind == "ppe_submit":
            futures = [pool.submit(fn, i) for i in range(n)]
            out = [f.result() for f in futures]
        elif kind == "ppe_map":
            out = list(pool.map(fn, range(n)))
        else:
            raise SystemExit(f"unknown peer kind {kind}")
        if len(out) != n:
            raise SystemExit(f"{kind}: {len(out)} results for {n} tasks")

    if kind == "mp_map":
        pool = ctx.Pool(2)
    else:
        pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx)
    try:
        # Warm-up: start the workers, then double the count until the warm-up time is spent; the
        # last round's rate sizes the measured count.
        run_once(pool, 20)
        n, rate, deadline = 50, 0.0, time.monotonic() + warmup
        while True:
            started = time.monotonic()
            run_once(pool, n)
            rate = n / max(time.monotonic() - started, 1e-6)
            if time.monotonic() >= deadline or n >= MAX_TASKS:
                break
            n = min(n * 2, MAX_TASKS)
        count = int(min(MAX_TASKS, max(100, rate * duration)))
        started = time.monotonic()
        run_once(pool, count)
        seconds = time.monotonic() - started
    finally:
        if kind == "mp_map":
            pool.terminate()
            pool.join()
        else:
            pool.shutdown(wait=True)
    print(json.dumps({"rate": round(count / seconds, 1), "count": count,
                      "seconds": round(seconds, 3)}))
    return 0


def peer(kind, work, warmup, duration):
    out = subprocess.run([PYTHON, os.path.abspath(__file__), "--peer", kind, "--work", work,
                          "--warmup-s", str(warmup), "--duration-s", str(duration)],
                         check=True, capture_output=True, text=True,
                         timeout=warmup * 4 + duration * 3 + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spindle(build_dir, address, args, warmup, duration):
    binary = os.path.join(build_dir, "bench", "pools", "bench_pools_load")
    cmd = [binary, "--address", address, "--python", PYTHON, "--worker-script", WORKER_SCRIPT,
           "--warmup-s", str(warmup), "--duration-s", str(duration),
           "--max-tasks", str(MAX_TASKS)] + args
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=warmup + duration + 120)
    if out.stderr.strip():
        print(out.stderr.strip(), file=sys.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["failed"] or r["rpc_errors"]:
        print(f"# WARNING {args}: {r['failed']} failed tasks, {r['rpc_errors']} rpc errors",
              file=sys.stderr)
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir")
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--warmup-s", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--duration-s", type=float, default=5.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return peer_main(args.peer, args.work, args.warmup_s, args.duration_s)
    if not args.build_dir:
        parser.error("--build-dir is required")

    import peers  # noqa: E402  (Spindled launcher and the result record shared by the groups)

    # Short runs, several rounds: the median resists the bursts of other work on a shared machine.
    warmup, duration = (0.3, 1.0) if args.quick else (1.0, 2.0)
    rounds = 1 if args.quick else 5
    b = args.build_dir
    echo_map = ["--kind", "worker", "--handler", "echo", "--payload", "x", "--mode", "map",
                "--window", str(MAP_WINDOW), "--order", "ordered"]
    echo_submit = ["--kind", "worker", "--handler", "echo", "--payload", "x", "--mode",
                   "submit", "--clients", str(SUBMIT_CLIENTS)]
    sleep_map = ["--kind", "worker", "--handler", "sleep_ms", "--payload", "1", "--mode", "map",
                 "--window", str(MAP_WINDOW), "--order", "ordered"]
    true_map = ["--kind", "command", "--mode", "map", "--window", str(MAP_WINDOW),
                "--order", "ordered", "--argv", "/bin/true"]
    true_submit = ["--kind", "command", "--mode", "submit", "--clients", str(SUBMIT_CLIENTS),
                   "--argv", "/bin/true"]

    # (label, runner) in the order they alternate within a round.
    plan = [
        ("spindle echo map", lambda a: spindle(b, a, echo_map, warmup, duration)),
        ("ppe_submit echo", lambda a: peer("ppe_submit", "echo", warmup, duration)),
        ("spindle echo submit", lambda a: spindle(b, a, echo_submit, warmup, duration)),
        ("ppe_map echo", lambda a: peer("ppe_map", "echo", warmup, duration)),
        ("mp_map echo", lambda a: peer("mp_map", "echo", warmup, duration)),
        ("spindle true map", lambda a: spindle(b, a, true_map, warmup, duration)),
        ("mp_map true", lambda a: peer("mp_map", "true", warmup, duration)),
        ("spindle true submit", lambda a: spindle(b, a, true_submit, warmup, duration)),
        ("spindle sleep1 map", lambda a: spindle(b, a, sleep_map, warmup, duration)),
        ("mp_map sleep1", lambda a: peer("mp_map", "sleep1", warmup, duration)),
        ("ppe_submit sleep1", lambda a: peer("ppe_submit", "sleep1", warmup, duration)),
        ("ppe_map sleep1", lambda a: peer("ppe_map", "sleep1", warmup, duration)),
    ]
    if args.quick:  # The target-bearing figures and the command pool's Map only.
        skip = {"spindle echo submit", "spindle true submit", "ppe_submit sleep1",
                "ppe_map sleep1"}
        plan = [p for p in plan if p[0] not in skip]

    runs = {}
    with peers.Spindled(b) as spindled:
        for rnd in range(rounds):
            for label, runner in plan:
                r = runner(spindled.address)
                runs.setdefault(label, []).append(r)
                lat = (f"  p50 {r['p50_us']:.0f} us  p99 {r['p99_us']:.0f} us"
                       if "p50_us" in r else "")
                print(f"# round {rnd + 1} {label:22} {r['rate']:>9.0f}/s{lat}", file=sys.stderr,
                      flush=True)

    def med(label):
        rs = runs.get(label)
        if not rs:
            return None, None
        rates = [r["rate"] for r in rs]
        m = statistics.median(rates)
        # The run closest to the median, for its latency figures.
        return m, min(rs, key=lambda r: abs(r["rate"] - m))

    results = []

    def add(name, clients, unit, s_label, peer_name, p_label, target=None, met=None):
        s, _ = med(s_label)
        p, _ = med(p_label)
        if s is None or p is None:
            return
        results.append(peers.result("pools", name, clients, unit, s, peer_name, p, target, met))

    map_name = f"trivial tasks/s, WORKER pool of 2, Map ordered window {MAP_WINDOW}"
    add(map_name + " vs PPE submit", 1, "tasks/s", "spindle echo map",
        "ProcessPoolExecutor(2) submit+result", "ppe_submit echo", ">= 1.0x", lambda r: r >= 1.0)
    add(map_name + " vs PPE map", 1, "tasks/s", "spindle echo map",
        "ProcessPoolExecutor(2).map", "ppe_map echo", ">= 1.0x", lambda r: r >= 1.0)
    add(map_name + " vs Pool.map", 1, "tasks/s", "spindle echo map",
        "multiprocessing.Pool(2).map chunksize=1", "mp_map echo", ">= 0.5x", lambda r: r >= 0.5)
    add("trivial tasks/s, WORKER pool of 2, SubmitTask+WaitTask", SUBMIT_CLIENTS, "tasks/s",
        "spindle echo submit", "ProcessPoolExecutor(2) submit+result", "ppe_submit echo")
    add(f"/bin/true tasks/s, COMMAND pool of 2, Map window {MAP_WINDOW}", 1, "tasks/s",
        "spindle true map", "multiprocessing.Pool(2).map subprocess.run chunksize=1",
        "mp_map true")
    add("/bin/true tasks/s, COMMAND pool of 2, SubmitTask+WaitTask", SUBMIT_CLIENTS, "tasks/s",
        "spindle true submit", "multiprocessing.Pool(2).map subprocess.run chunksize=1",
        "mp_map true")
    sleep_name = f"1 ms tasks/s, WORKER pool of 2, Map ordered window {MAP_WINDOW}"
    add(sleep_name + " vs Pool.map", 1, "tasks/s", "spindle sleep1 map",
        "multiprocessing.Pool(2).map chunksize=1", "mp_map sleep1", ">= 1.0x", lambda r: r >= 1.0)
    add(sleep_name + " vs PPE submit", 1, "tasks/s", "spindle sleep1 map",
        "ProcessPoolExecutor(2) submit+result", "ppe_submit sleep1")
    add(sleep_name + " vs PPE map", 1, "tasks/s", "spindle sleep1 map",
        "ProcessPoolExecutor(2).map", "ppe_map sleep1")

    for label, rs in runs.items():
        m, r = med(label)
        rates = sorted(x["rate"] for x in rs)
        lat = (f"  p50 {r['p50_us']:.0f} us  p90 {r['p90_us']:.0f} us  p99 {r['p99_us']:.0f} us"
               f"  (failed {r['failed']})" if "p50_us" in r else "")
        print(f"# {label:22} median {m:>9.0f}/s  range {rates[0]:.0f}..{rates[-1]:.0f}{lat}",
              file=sys.stderr)
    for r in results:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
