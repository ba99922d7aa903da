#!/usr/bin/env python3
"""A remote Pool(3) running 10 tasks, with a completion callback per task.

The multiprocessing version::

    with multiprocessing.Pool(3) as pool:
        for i in range(10):
            pool.apply_async(square, (i,), callback=report)

Here the pool lives in spindled (PoolService, a COMMAND pool of 3 concurrent processes) and each
task is a command run on the server's node. ``task.add_done_callback`` is fed by the pool's
WatchTasks event stream: the callbacks fire as tasks finish, in completion order, while the
main thread only waits for the last one.

Last line: ``pool: 10/10 tasks succeeded, callbacks 10, sum of squares 285``.
"""

from __future__ import annotations

import threading
import time

from _common import arguments, spindle, unique

TASKS = 10


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    client = spindle.Client(args.address)
    pool = client.pool(unique("pool"), size=3)
    lock = threading.Lock()
    results: dict[int, spindle.TaskResult] = {}
    all_done = threading.Event()

    def report(index: int, task: spindle.Task) -> None:
        result = task.result()
        with lock:
            results[index] = result
            print(f"callback: task {index} {result.outcome.lower()} -> {result.stdout.decode().strip()}",
                  flush=True)
            if len(results) == TASKS:
                all_done.set()

    started = time.monotonic()
    try:
        for i in range(TASKS):
            # A little work per task, so that three at a time is visibly faster than one.
            task = pool.submit(["sh", "-c", f"sleep 0.1; echo $(({i} * {i}))"])
            task.add_done_callback(lambda t, i=i: report(i, t))
        if not all_done.wait(60):
            print(f"pool: timed out with {len(results)}/{TASKS} callbacks")
            return 1
        elapsed = time.monotonic() - started
        info = pool.info()
        print(f"{TASKS} tasks in {elapsed:.2f} s on {info.spec.size} workers "
              f"(server counted {info.stats.tasks_succeeded} succeeded)")
        succeeded = sum(1 for r in results.values() if r.ok)
        total = sum(int(r.stdout) for r in results.values() if r.ok)
        print(f"pool: {succeeded}/{TASKS} tasks succeeded, callbacks {len(results)}, sum of squares {total}")
        return 0 if succeeded == TASKS else 1
    finally:
        pool.delete()
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
