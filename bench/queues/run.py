#!/usr/bin/python3
"""Queue benchmarks for bench/run: put+get pairs per second through Spindle's QueueService, side
by side in one run with Redis lists, Python's multiprocessing.Manager queue and a bare gRPC call.

    /usr/bin/python3 bench/queues/run.py --build-dir DIR [--json FILE] [--quick]

Starts spindled and redis-server (persistence off) on loopback itself; builds nothing. For each
client count it runs Spindle and then the peer, alternately. Figures (ratio = Spindle / peer):
  * unary put+get pairs/s (PutItems + GetItems)  vs Redis LPUSH+RPOP    target >= 0.4x at 16
  * unary put+get pairs/s                         vs Manager().Queue()   target >= 2x at 16
  * unary put+get pairs/s                         vs bare gRPC echo (two GetLimits per pair)
  * streaming pairs/s (Produce + Consume)         vs Redis LPUSH+BRPOP   target >= 1.0x at 16
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402


def manager(clients, warmup, duration):
    import subprocess
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manager_peer.py")
    out = subprocess.run(["/usr/bin/python3", script, "--clients", str(clients), "--warmup-s",
                          str(warmup), "--duration-s", str(duration)], check=True,
                         capture_output=True, text=True, timeout=warmup + duration + 120).stdout
    return json.loads(out.strip().splitlines()[-1])


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
            unary = peers.load(b, "spindle", spindled.address, "pair-unary", clients, warmup, duration)
            rpop = peers.load(b, "redis", redis.address, "lpush-rpop", clients, warmup, duration)
            results.append(peers.result(
                "queues", "put+get pairs/s, unary (PutItems+GetItems)", clients, "pairs/s",
                unary["rate"], "redis LPUSH+RPOP", rpop["rate"],
                ">= 0.4x at 16 clients" if at16 else None,
                (lambda r: r >= 0.4) if at16 else None))
            mgr = manager(clients, warmup, duration)
            results.append(peers.result(
                "queues", "put+get pairs/s, unary vs multiprocessing.Manager queue", clients,
                "pairs/s", unary["rate"], "multiprocessing.Manager().Queue()", mgr["rate"],
                ">= 2x at 16 clients" if at16 else None, (lambda r: r >= 2.0) if at16 else None))
            echo = peers.load(b, "spindle", spindled.address, "echo", clients, warmup, duration)
            results.append(peers.result(
                "queues", "put+get pairs/s, unary vs bare gRPC echo (2 calls per pair)", clients,
                "pairs/s", unary["rate"], "ServerService.GetLimits x2", echo["rate"] / 2))
            stream = peers.load(b, "spindle", spindled.address, "pair-stream", clients, warmup,
                                duration)
            brpop = peers.load(b, "redis", redis.address, "lpush-brpop", clients, warmup, duration)
            results.append(peers.result(
                "queues", "put+get pairs/s, streaming (Produce+Consume)", clients, "pairs/s",
                stream["rate"], "redis LPUSH+BRPOP", brpop["rate"],
                ">= 1.0x at 16 clients" if at16 else None, (lambda r: r >= 1.0) if at16 else None))
            for name, r in (("unary", unary), ("stream", stream), ("redis-rpop", rpop),
                            ("redis-brpop", brpop), ("manager", mgr), ("echo", echo)):
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
