#!/usr/bin/python3
"""The multiprocessing.Manager queue peer: N client processes, each doing put+get pairs on its
own Manager().Queue() through the manager's server process. Prints the same JSON as the load
generator: {"mode","clients","ops","seconds","rate","p50_us","p90_us","p99_us"}.

    /usr/bin/python3 manager_peer.py --clients N --warmup-s W --duration-s D
"""
import argparse
import json
import multiprocessing
import time


def client(q, start, end, out):
    samples = []
    payload = "x" * 16
    while True:
        began = time.monotonic()
        if began >= end:
            break
        q.put(payload)
        q.get(timeout=30)
        ended = time.monotonic()
        if began >= start and ended <= end:
            samples.append(int((ended - began) * 1e6))
    out.put(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--warmup-s", type=float, default=1)
    parser.add_argument("--duration-s", type=float, default=5)
    args = parser.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.duration_s <= 600):
        raise SystemExit("clients 1..256, duration 0..600 s")
    with multiprocessing.Manager() as manager:
        queues = [manager.Queue() for _ in range(args.clients)]
        out = multiprocessing.Queue()
        start = time.monotonic() + args.warmup_s + 0.5  # process start-up is not measured
        end = start + args.duration_s
        procs = [multiprocessing.Process(target=client, args=(q, start, end, out)) for q in queues]
        for p in procs:
            p.start()
        samples = []
        for _ in procs:
            samples.extend(out.get(timeout=args.warmup_s + args.duration_s + 60))
        for p in procs:
            p.join(timeout=30)
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0

    print(json.dumps({"mode": "manager-queue", "clients": args.clients, "ops": len(samples),
                      "seconds": args.duration_s, "rate": len(samples) / args.duration_s,
                      "p50_us": pct(0.5), "p90_us": pct(0.9), "p99_us": pct(0.99)}))


if __name__ == "__main__":
    main()
