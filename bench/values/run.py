#!/usr/bin/python3
"""Value benchmarks for bench/run: AddToValue per second on one shared counter, side by side in one
run with Redis INCR and a bare gRPC call of the same shape (ServerService.GetLimits).

    /usr/bin/python3 bench/values/run.py --build-dir DIR [--json FILE] [--quick]

Uses the load generator of bench/queues (bench_queues_load); starts spindled and redis-server
(persistence off) on loopback itself; builds nothing. Figures (ratio = Spindle / peer):
  * Add/s vs Redis INCR        target >= 0.5x at 16 clients
  * Add/s vs bare gRPC echo    target within 1.25x of the echo (ratio >= 0.8) at 16 clients
  * Add/s over ValueStream vs Redis INCR (one add in flight per client, as INCR): the same
    target for the high-rate path, >= 0.5x at 16 clients
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "queues"))
import peers  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    clients_list = [16] if args.quick else [1, 16, 32]
    warmup, duration = (0.5, 1.5) if args.quick else (1.0, 5.0)
    b = args.build_dir
    results = []
    with peers.Spindled(b) as spindled, peers.Redis() as redis:
        for clients in clients_list:
            at16 = clients == 16
            add = peers.load(b, "spindle", spindled.address, "add", clients, warmup, duration)
            incr = peers.load(b, "redis", redis.address, "incr", clients, warmup, duration)
            echo = peers.load(b, "spindle", spindled.address, "echo", clients, warmup, duration)
            stream = peers.load(b, "spindle", spindled.address, "add-stream", clients, warmup,
                                duration)
            results.append(peers.result(
                "values", "Add/s (AddToValue on one counter)", clients, "ops/s", add["rate"],
                "redis INCR", incr["rate"], ">= 0.5x at 16 clients" if at16 else None,
                (lambda r: r >= 0.5) if at16 else None))
            results.append(peers.result(
                "values", "Add/s vs bare gRPC echo", clients, "ops/s", add["rate"],
                "ServerService.GetLimits", echo["rate"],
                "within 1.25x of echo (>= 0.8x) at 16 clients" if at16 else None,
                (lambda r: r >= 0.8) if at16 else None))
            results.append(peers.result(
                "values", "Add/s over ValueStream, one in flight per client", clients, "ops/s",
                stream["rate"], "redis INCR", incr["rate"],
                ">= 0.5x at 16 clients" if at16 else None, (lambda r: r >= 0.5) if at16 else None))
            for name, r in (("add", add), ("add-stream", stream), ("redis-incr", incr),
                            ("echo", echo)):
                print(f"# {clients:>3} clients {name:12} {r['rate']:>10.0f}/s  p50 {r['p50_us']} us"
                      f"  p99 {r['p99_us']} us", file=sys.stderr)
    for r in results:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
