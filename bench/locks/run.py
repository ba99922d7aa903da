#!/usr/bin/python3
"""Lock benchmarks for bench/run: Spindle's locks side by side with Redis, etcd's lock API,
Python's multiprocessing.Manager locks and a bare gRPC echo, plus spindled's memory and threads
with many blocked waiters.

    bench/locks/run.py --build-dir DIR [--json FILE] [--quick]

Builds nothing: takes spindled and bench_locks from DIR. Starts on free loopback ports:
  * spindled (metrics off);
  * redis-server --save '' --appendonly no (no persistence);
  * etcd 3.4 (Debian's etcd-server), one member, data dir in a fresh temp dir on tmpfs
    (/dev/shm when it exists, else the system temp dir). etcd 3.4 has no --unsafe-no-fsync (3.5
    added it); on tmpfs its WAL and bbolt fsyncs return at once, which is what that flag would
    do, so etcd is measured without waiting for a disk while keeping its defaults otherwise
    (raft WAL written and committed per request, --snapshot-count 100000). Its client is
    bench_locks' C++ gRPC client of v3lockpb.Lock/Unlock (generated at build time from the
    .proto files of golang-etcd-server-dev) with one lease per client, as `etcdctl lock` holds
    its lock under a session lease;
  * multiprocessing.Manager: bench/locks/manager_peer.py (a SyncManager serving one
    threading.Lock per name on 127.0.0.1 TCP, N forked client processes).
Every comparison runs Spindle (unary Acquire + Release on the same client count, distinct names
unless contended; the stream rows carry the same acquire and release as messages on one
LockStream per client) and its peer alternately in the same run: in full mode 3 rounds of (Spindle,
peer), each run 0.5 s of warm-up and a 2 s window, and each side's median (its rates go to
stderr); --quick runs one round of 0.5 + 1.5 s. The request-id rows run the same unary pairs with
a fresh request_id on every Acquire and Release (the server remembers each answer for retries)
against the same pairs without, at 1 and 16 clients.

Blocked waiters, twice, each on a fresh spindled: one holder, then bench_locks --mode waiters
parks 100,000 Acquire(wait=true) waiters on that lock over 64 connections (callback API; bounded
to 60 s to queue), first as 100,000 unary Acquire calls, then as acquire messages on 64
LockStreams (about 1,560 pending per stream), and reads the server's VmRSS and Threads
(/proc/PID/status) idle, at a tenth and with every waiter parked, and spindle_lock_waiters
(GetStats tables.lock_waiters); then releases the holder, lets the lock pass down the queue for
3 s, cancels the rest and checks every waiter ended granted or CANCELLED with the server alive
and no waiter left. The unary run holds about 2 GiB in spindled and as much in bench_locks.

--quick (about 30 s, for CI): Redis, echo and Manager at 16 clients only, the contended
handoffs, 5,000 blocked waiters (each way) instead of 100,000, no etcd (starting it and its
runs would not fit), and p50 latencies only (a 1.5 s window's p99 is other tenants' noise).

Prints one JSON object per result:
{"group","name","clients","unit","spindle","peer","peer_value","ratio","target","met"}.
For rates "ratio" is Spindle / peer (higher is better); for latencies it is peer / Spindle (so
again higher is better).
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


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


def run_json(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): "
                           f"{(out.stderr or out.stdout).strip()[:500]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_load(binary, target, address, mode, clients, contended, warmup, duration,
             request_ids=False):
    cmd = [binary, "--target", target, "--address", address, "--mode", mode, "--clients",
           str(clients), "--warmup-s", str(warmup), "--duration-s", str(duration)]
    if contended:
        cmd.append("--contended")
    if request_ids:
        cmd.append("--request-ids")
    return run_json(cmd, warmup + duration + 90)


def run_manager(clients, contended, warmup, duration):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "manager_peer.py"), "--clients", str(clients),
           "--warmup-s", str(warmup), "--duration-s", str(duration)]
    if contended:
        cmd.append("--contended")
    return run_json(cmd, warmup + duration + 90)


def start_spindled(spindled, procs):
    port = free_port()
    server = subprocess.Popen([spindled, "--listen", f"127.0.0.1:{port}", "--metrics-listen", "",
                               "--log-level", "warn"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(server)
    wait_port(port, server)
    return server, f"127.0.0.1:{port}"


def start_etcd(etcd_bin, procs, dirs):
    """One etcd member on free loopback ports, its data in a new temp dir on tmpfs."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    workdir = tempfile.mkdtemp(prefix="spindle-bench-etcd-", dir=parent)
    dirs.append(workdir)
    cport, pport = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    proc = subprocess.Popen(
        [etcd_bin, "--name", "bench", "--data-dir", os.path.join(workdir, "data"),
         "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"bench={peer_url}", "--initial-cluster-state", "new",
         "--logger", "zap", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    wait_port(cport, proc)
    deadline = time.time() + 20
    while True:  # listening is not yet serving: wait until it has elected itself
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=1) as r:
                if json.load(r).get("health") == "true":
                    break
        except (OSError, ValueError):
            pass
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("etcd did not become healthy in 20 s")
        time.sleep(0.1)
    return f"127.0.0.1:{cport}", workdir


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    etcd_bin = shutil.which("etcd")
    etcd_client = run_json([load, "--features"], 10).get("etcd", False)
    # Short runs, several rounds in full mode: the median resists the bursts of other work on a
    # shared machine.
    warmup, duration, rounds = (0.5, 1.5, 1) if args.quick else (0.5, 2.0, 3)
    # The p99 of one 1.5 s window on a shared machine is decided by other tenants' hiccups (its
    # ratio moves 5x between runs): --quick reports p50 only.
    percentiles = ("p50",) if args.quick else ("p50", "p99")

    procs = []
    dirs = []
    results = []
    failed = []

    def emit(name, clients, unit, value, peer, peer_value, ratio, target, met):
        row = {"group": "locks", "name": name, "clients": clients, "unit": unit,
               "spindle": None if value is None else round(value, 1), "peer": peer,
               "peer_value": None if peer_value is None else round(peer_value, 1),
               "ratio": None if ratio is None else round(ratio, 3), "target": target,
               "met": met}
        results.append(row)
        print(json.dumps(row), flush=True)

    def scenario(fn, *a, **kw):
        """Runs one comparison; a failure is reported and the others still run."""
        try:
            fn(*a, **kw)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as e:
            failed.append(str(e))
            print(f"locks: {fn.__name__}{a}: {e}", file=sys.stderr, flush=True)

    try:
        server, spindle = start_spindled(spindled, procs)

        redis = None
        if redis_bin:
            rport = free_port()
            workdir = tempfile.mkdtemp(prefix="spindle-bench-redis-")
            dirs.append(workdir)
            rproc = subprocess.Popen([redis_bin, "--port", str(rport), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", workdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(rproc)
            wait_port(rport, rproc)
            redis = f"127.0.0.1:{rport}"
        else:
            print("locks: redis-server not installed (scripts/install-deps --bench); "
                  "Redis rows have no peer value", file=sys.stderr)

        def paired(what, spindle_run, peer_run):
            """Runs Spindle and its peer alternately `rounds` times; returns, per side, the run
            whose rate is the median (its latencies come with it)."""
            sides = ([], [])
            for _ in range(rounds):
                sides[0].append(spindle_run())
                sides[1].append(peer_run() if peer_run else None)

            def median(runs):
                if runs[0] is None:
                    return None
                ranked = sorted(runs, key=lambda r: r["rate"])
                if len(ranked) > 1:
                    rates = ", ".join(f"{r['rate']:.0f}" for r in ranked)
                    print(f"locks: {what}: rates {rates}", file=sys.stderr, flush=True)
                return ranked[len(ranked) // 2]
            return median(sides[0]), median(sides[1])

        def spindle_pairs(clients, contended, mode="unary"):
            return lambda: run_load(load, "spindle", spindle, mode, clients, contended, warmup,
                                    duration)

        def vs_redis(name, mode, clients, contended, target=None, check=None, latency=True):
            s, r = paired(f"{name} ({mode}) c={clients} spindle | redis",
                          spindle_pairs(clients, contended, mode),
                          (lambda: run_load(load, "redis", redis, "setnx", clients, contended,
                                            warmup, duration)) if redis else None)
            ratio = s["rate"] / r["rate"] if r and r["rate"] else None
            emit(f"{name} ({mode})", clients, "pairs/s", s["rate"], "redis SET NX PX + DEL",
                 r["rate"] if r else None, ratio, target,
                 None if check is None or ratio is None else check(ratio))
            if latency:
                for p in percentiles:
                    lr = r[f"{p}_us"] / s[f"{p}_us"] if r and s[f"{p}_us"] else None
                    emit(f"{name} ({mode}): {p} acquire latency", clients, "us", s[f"{p}_us"],
                         "redis SET NX PX", r[f"{p}_us"] if r else None, lr, None, None)

        def vs_echo(name, mode, clients, target, check):
            s, e = paired(f"{name} c={clients} spindle | echo", spindle_pairs(clients, False, mode),
                          spindle_pairs(clients, False, "echo"))
            ratio = s["rate"] / e["rate"] if e["rate"] else None
            emit(f"{name} ({mode})", clients, "pairs/s", s["rate"],
                 "bare gRPC echo (2 x GetLimits)", e["rate"], ratio, target,
                 None if ratio is None else check(ratio))

        def request_ids(clients):
            """What idempotency costs: every Acquire and Release with a fresh request_id (the
            server remembers each answer) against the same calls without."""
            s, plain = paired(f"request ids c={clients} with | without",
                              lambda: run_load(load, "spindle", spindle, "unary", clients, False,
                                               warmup, duration, request_ids=True),
                              spindle_pairs(clients, False))
            ratio = s["rate"] / plain["rate"] if plain["rate"] else None
            emit("uncontended acquire+release with request ids (unary)", clients, "pairs/s",
                 s["rate"], "the same calls without request ids", plain["rate"], ratio, None,
                 None)

        def vs_manager(clients, mode="unary"):
            s, m = paired(f"vs Manager ({mode}) c={clients} spindle | manager",
                          spindle_pairs(clients, False, mode),
                          lambda: run_manager(clients, False, warmup, duration))
            ratio = s["rate"] / m["rate"] if m["rate"] else None
            emit(f"uncontended acquire+release vs Manager ({mode})", clients, "pairs/s",
                 s["rate"], "multiprocessing.Manager Lock (TCP)", m["rate"], ratio,
                 "ratio >= 1.5", None if ratio is None else ratio >= 1.5)
            if mode != "unary":  # A stream's acquires are pipelined: no per-acquire latency.
                return
            for p in percentiles:
                lr = m[f"{p}_us"] / s[f"{p}_us"] if s[f"{p}_us"] else None
                emit(f"uncontended vs Manager: {p} acquire latency", clients, "us", s[f"{p}_us"],
                     "multiprocessing.Manager Lock", m[f"{p}_us"], lr, None, None)

        def vs_etcd(etcd, clients, contended, mode="unary"):
            s, e = paired(f"vs etcd ({mode}) c={clients} contended={contended} spindle | etcd",
                          spindle_pairs(clients, contended, mode),
                          lambda: run_load(load, "etcd", etcd, "lock", clients, contended, warmup,
                                           duration))
            ratio = s["rate"] / e["rate"] if e["rate"] else None
            need = 20 if contended else 4
            what = "contended handoffs, one lock" if contended else "uncontended acquire+release"
            emit(f"{what} vs etcd ({mode})", clients, "handoffs/s" if contended else "pairs/s",
                 s["rate"], "etcd v3lock Lock + Unlock", e["rate"], ratio, f"ratio >= {need}",
                 None if ratio is None else ratio >= need)
            if mode != "unary":
                return
            for p in percentiles:
                lr = e[f"{p}_us"] / s[f"{p}_us"] if s[f"{p}_us"] else None
                emit(f"{what} vs etcd: {p} acquire latency", clients, "us", s[f"{p}_us"],
                     "etcd v3lock Lock", e[f"{p}_us"], lr, None, None)

        def waiters(count, via, grant_s):
            # A fresh server, so "idle" is idle and earlier runs' tables do not count.
            wserver, waddress = start_spindled(spindled, procs)
            try:
                w = run_json([load, "--target", "spindle", "--address", waddress, "--mode",
                              "waiters", "--via", via, "--waiters", str(count), "--channels", "64",
                              "--server-pid", str(wserver.pid), "--queue-s", "60",
                              "--grant-s", str(grant_s)], 60 + grant_s + 120 + 30 + 60)
            finally:
                crashed = wserver.poll() is not None
                stop(wserver)
            print(f"locks: waiters: {json.dumps(w)}", file=sys.stderr, flush=True)
            parked = w["parked"]
            shape = "unary Acquire calls" if via == "unary" else "acquires on 64 LockStreams"
            label = (f"{parked:,} blocked waiters as {shape}"
                     + ("" if parked >= count else f" (of {count:,} asked)"))
            rss_mib = w["rss_kib"] / 1024
            emit(f"{label}: spindled RSS", parked, "MiB", rss_mib, "idle spindled",
                 w["idle_rss_kib"] / 1024, None, "< 256 MiB", parked >= count and rss_mib < 256)
            emit(f"{label}: RSS per waiter", parked, "bytes", w["bytes_per_waiter"], None, None,
                 None, None, None)
            grew = w["threads"] - w["tenth_threads"] if w["tenth_threads"] > 0 else None
            emit(f"{label}: spindled threads (peer: at a tenth of them)", parked, "threads",
                 w["threads"], f"spindled with {w['tenth_parked']:,} waiters", w["tenth_threads"],
                 None, f"threads do not grow with waiters: +4 at most from a tenth to all "
                 f"(idle {w['idle_threads']})", grew is not None and grew <= 4)
            emit(f"{label}: handoffs down the queue", parked, "handoffs/s",
                 w["handoffs"] / w["handoff_seconds"] if w["handoff_seconds"] else 0, None, None,
                 None, None, None)
            clean = (w["failed"] == 0 and w["drained"] and w["closed"] and w["server_alive"]
                     and not crashed and w["waiters_after"] == 0
                     and w["granted"] + w["cancelled"] == w["started"])
            emit(f"{label}: ended granted ({w['granted']:,}) or cancelled ({w['cancelled']:,} "
                 f"in {w['cancel_seconds']:.1f} s)", parked, "calls",
                 w["granted"] + w["cancelled"], None, None, None,
                 "every waiter granted or CANCELLED; server alive; 0 waiters left", clean)
            if w["failed"]:
                print(f"locks: waiters: {w['failed']} failed, first: {w['first_error']}",
                      file=sys.stderr)

        plan = [1, 16, 32] if not args.quick else [16]
        for clients in plan:
            target = "ratio >= 0.5 (at 16)" if clients == 16 else None
            check = (lambda r: r >= 0.5) if clients == 16 else None
            scenario(vs_redis, "uncontended acquire+release", "unary", clients, False, target,
                     check)
            scenario(vs_redis, "uncontended acquire+release", "stream", clients, False, target,
                     check, latency=False)
        for clients in ([1, 16] if not args.quick else [16]):
            scenario(vs_echo, "uncontended acquire+release vs echo", "unary", clients,
                     "ratio >= 0.8 (within 1.25x)", lambda r: r >= 0.8)
        for clients in ([1, 16] if not args.quick else [16]):
            scenario(vs_manager, clients)
            scenario(vs_manager, clients, "stream")
        scenario(vs_redis, "contended handoffs, one lock", "unary", 32, True)
        scenario(vs_redis, "contended handoffs, one lock", "stream", 32, True, latency=False)
        for clients in ([1, 16] if not args.quick else [16]):
            scenario(request_ids, clients)

        if args.quick:
            print("locks: --quick: etcd skipped", file=sys.stderr)
        elif not etcd_bin:
            print("locks: etcd not installed (scripts/install-deps --bench); etcd skipped",
                  file=sys.stderr)
        elif not etcd_client:
            print("locks: bench_locks was built without etcd's protos (golang-etcd-server-dev, "
                  "scripts/install-deps --bench); etcd skipped", file=sys.stderr)
        else:
            try:
                etcd, _ = start_etcd(etcd_bin, procs, dirs)
            except RuntimeError as e:
                etcd = None
                failed.append(str(e))
                print(f"locks: etcd: {e}", file=sys.stderr)
            if etcd:
                for clients in (1, 16):
                    scenario(vs_etcd, etcd, clients, False)
                    scenario(vs_etcd, etcd, clients, False, "stream")
                scenario(vs_etcd, etcd, 32, True)
                scenario(vs_etcd, etcd, 32, True, "stream")
                stop(procs.pop())

        if server.poll() is not None:
            failed.append(f"spindled exited with {server.returncode}")
        for via in ("unary", "stream"):
            scenario(waiters, 5000 if args.quick else 100_000, via, 1 if args.quick else 3)
    finally:
        for proc in reversed(procs):
            stop(proc)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    if args.json:
        with open(args.json, "w") as f:
            for row in results:
                f.write(json.dumps(row) + "\n")
    if failed:
        print(f"locks: {len(failed)} scenario(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
