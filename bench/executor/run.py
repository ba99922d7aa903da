#!/usr/bin/python3
"""Executor benchmarks for bench/run: runs bench_executor and prints one JSON object per figure.

    bench/executor/run.py --build-dir DIR [--json FILE] [--quick]

Each figure is the executor side by side with the std::thread + std::condition_variable
equivalent from the same run. "ratio" is peer / Spindle (time or bytes), so higher is better and
1.0 means parity; "target" and "met" are the issue's targets.
"""
import argparse
import json
import os
import subprocess
import sys

# benchmark name prefix -> (figure name, unit, peer, target description, check(coro, thread, ratio))
FIGURES = [
    ("BM_SuspendResume/1", "suspend+resume through the scheduler (1 worker)", "ns",
     "condvar hand-off", "< 50 ns", lambda c, t, r: c < 50),
    ("BM_SuspendResume/2", "suspend+resume through the scheduler (2 workers)", "ns",
     "condvar hand-off", "< 50 ns", lambda c, t, r: c < 50),
    ("BM_SpawnComplete", "spawn+complete a task (CPU)", "cpu_ns", "std::thread create+join",
     None, None),
    ("BM_SuspendedMemory/1000000", "suspended coroutine (1,000,000 waiting)", "bytes",
     "thread blocked on a condvar", "< 268 bytes (256 MiB / 1M)", lambda c, t, r: c < 268.4),
    ("BM_PendingTimers/100000", "timer arm+cancel with 100,000 pending (CPU)", "cpu_ns",
     "timer thread with std::multimap", None, None),
    ("BM_CrossThreadWake/2", "cross-thread wake-up, foreign thread -> coroutine (2 workers)", "ns",
     "condvar notify -> thread", "ratio >= 1", lambda c, t, r: r >= 1.0),
    ("BM_CoroutineWakeHandoff", "wake-up hand-off, coroutine -> coroutine", "ns",
     "condvar hand-off", "ratio >= 1", lambda c, t, r: r >= 1.0),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    binary = os.path.join(args.build_dir, "bench", "executor", "bench_executor")
    cmd = [binary, "--benchmark_format=json"]
    if args.quick:
        cmd.append("--benchmark_filter=BM_SuspendResume/1|BM_CrossThreadWake|BM_CoroutineWakeHandoff")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    benchmarks = json.loads(out)["benchmarks"]

    results = []
    for prefix, name, unit, peer, target, check in FIGURES:
        rows = [b for b in benchmarks if b["name"].startswith(prefix)]
        if not rows:
            continue
        b = rows[0]
        coro, thread, ratio = b[f"coro_{unit}"], b[f"thread_{unit}"], b["ratio"]
        results.append({"group": "executor", "name": name, "clients": 1, "unit": unit,
                        "spindle": coro, "peer": peer, "peer_value": thread, "ratio": ratio,
                        "target": target, "met": check(coro, thread, ratio) if check else None})
    for r in results:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
