#!/usr/bin/python3
"""Process benchmarks for bench/run: spawns per second of /bin/true through spindled, side by side
in one run with a local posix_spawn loop and a local fork+exec loop (2 threads each), and the
round-trip latency of a Run of `echo`.

    /usr/bin/python3 bench/processes/run.py --build-dir DIR [--json FILE] [--quick]

Starts spindled on loopback itself (metrics off); builds nothing (bench_processes_load and
spindled must be in DIR). Each figure alternates Spindle and the local loop in the same run.
Figures (ratio = Spindle / peer):
  * Run(/bin/true) per second, N concurrent clients  vs local posix_spawn+waitpid, 2 threads
                                                       target >= 0.8x at 16 clients
  * the same                                          vs local fork+execve+waitpid, 2 threads
  * Run(echo hi) round trip p50, 1 client, in ms      target < 2 ms (peer: local posix_spawn p50)
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "queues"))
import peers  # noqa: E402  (Spindled launcher and the result record shared by the groups)


def load(build_dir, args, warmup, duration):
    binary = os.path.join(build_dir, "bench", "processes", "bench_processes_load")
    out = subprocess.run([binary] + args + ["--warmup-s", str(warmup), "--duration-s",
                                            str(duration)],
                         check=True, capture_output=True, text=True,
                         timeout=warmup + duration + 90).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    clients_list = [16] if args.quick else [1, 4, 16, 32]
    warmup, duration = (0.5, 2.0) if args.quick else (1.0, 5.0)
    b = args.build_dir
    results = []
    with peers.Spindled(b) as spindled:
        for clients in clients_list:
            at16 = clients == 16
            spin = load(b, ["--mode", "spindle", "--address", spindled.address, "--clients",
                            str(clients), "--argv", "/bin/true"], warmup, duration)
            local = load(b, ["--mode", "posix_spawn", "--threads", "2", "--argv", "/bin/true"],
                         warmup, duration)
            forked = load(b, ["--mode", "fork_exec", "--threads", "2", "--argv", "/bin/true"],
                          warmup, duration)
            results.append(peers.result(
                "processes", "spawns/s of /bin/true (Run: spawn+exit+reap)", clients, "spawns/s",
                spin["rate"], "local posix_spawn+waitpid, 2 threads", local["rate"],
                ">= 0.8x at 16 clients" if at16 else None, (lambda r: r >= 0.8) if at16 else None))
            results.append(peers.result(
                "processes", "spawns/s of /bin/true vs fork+exec", clients, "spawns/s",
                spin["rate"], "local fork+execve+waitpid, 2 threads", forked["rate"]))
            for name, r in (("spindle", spin), ("posix_spawn", local), ("fork_exec", forked)):
                print(f"# {clients:>3} clients {name:12} {r['rate']:>9.0f}/s  p50 {r['p50_us']} us"
                      f"  p99 {r['p99_us']} us", file=sys.stderr)
        echo = load(b, ["--mode", "spindle", "--address", spindled.address, "--clients", "1",
                        "--argv", "/bin/echo", "hi"], warmup, duration)
        local_echo = load(b, ["--mode", "posix_spawn", "--threads", "1", "--argv", "/bin/echo",
                              "hi"], warmup, duration)
        p50_ms = echo["p50_us"] / 1000.0
        results.append({
            "group": "processes", "name": "Run(echo hi) round trip p50", "clients": 1,
            "unit": "ms", "spindle": p50_ms, "peer": "local posix_spawn+waitpid p50",
            "peer_value": local_echo["p50_us"] / 1000.0,
            "ratio": round(p50_ms / max(local_echo["p50_us"] / 1000.0, 1e-9), 2),
            "target": "< 2 ms", "met": p50_ms < 2.0})
        print(f"# echo Run p50 {echo['p50_us']} us p90 {echo['p90_us']} us p99 {echo['p99_us']} us;"
              f" local p50 {local_echo['p50_us']} us", file=sys.stderr)
    for r in results:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
