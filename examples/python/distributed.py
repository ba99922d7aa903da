#!/usr/bin/env python3
"""Distributed processes: a master fills a task queue, workers (separate programs) drain it and
put results on a result queue, acknowledging each task only once its result is out.

This is the "distributed processes" recipe of ``multiprocessing.managers.BaseManager`` (a master
serving two queues over the network, workers connecting to it) with spindled as the manager. The
workers here are started by the master for the demo (``python3 distributed.py --worker``), but
they are ordinary programs that could run on any machine that reaches the server.

Workers LEASE each task (``get(lease=...)``) and ack it after putting the result: a worker that
dies mid-task gives its task back (its session ends, the lease returns to the queue) and another
worker does it. The master closes the task queue when every result is in; the workers then see
the queue drained and exit.

Last line: ``distributed: 30 tasks, 30 results, sum of squares 9455``.
"""

from __future__ import annotations

import queue as stdlib_queue
import subprocess
import sys
import time

from _common import arguments, spindle, unique

TASKS = 30
WORKERS = 3


def run_worker(address: str, tasks_name: str, results_name: str, worker_id: str) -> int:
    done = 0
    deadline = time.monotonic() + 60
    with spindle.Client(address) as client:
        tasks, results = client.queue(tasks_name), client.queue(results_name)
        while time.monotonic() < deadline:
            try:
                delivery = tasks.get(timeout=1.0, lease=30)
            except stdlib_queue.Empty:
                continue
            except spindle.QueueDrained:
                break  # The master closed the task queue and it is empty: done.
            n = delivery.value["n"]
            time.sleep(0.02)  # The work.
            results.put({"n": n, "square": n * n, "worker": worker_id})
            delivery.ack()  # Only now is the task gone for good.
            done += 1
    print(f"worker {worker_id}: {done} tasks", flush=True)
    return 0


def run_master(address: str) -> int:
    tasks_name, results_name = unique("distributed-tasks"), unique("distributed-results")
    with spindle.Client(address) as client:
        tasks, results = client.queue(tasks_name), client.queue(results_name)
        tasks.put_many([{"n": n} for n in range(1, TASKS + 1)])
        workers = [subprocess.Popen([sys.executable, __file__, "--address", address, "--worker", str(w),
                                     "--tasks", tasks_name, "--results", results_name])
                   for w in range(WORKERS)]
        collected = {}
        deadline = time.monotonic() + 60
        while len(collected) < TASKS and time.monotonic() < deadline:
            try:
                result = results.get(timeout=1.0)
            except stdlib_queue.Empty:
                continue
            collected[result["n"]] = result
        tasks.close()  # No more tasks: the workers drain the queue and exit.
        codes = []
        for worker in workers:
            try:
                codes.append(worker.wait(30))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
        tasks.delete()
        results.delete()
    by_worker: dict[str, int] = {}
    for result in collected.values():
        by_worker[result["worker"]] = by_worker.get(result["worker"], 0) + 1
    print(f"results per worker: {dict(sorted(by_worker.items()))}; worker exit codes {codes}")
    total = sum(r["square"] for r in collected.values())
    print(f"distributed: {TASKS} tasks, {len(collected)} results, sum of squares {total}")
    return 0 if len(collected) == TASKS and codes == [0] * WORKERS else 1


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--worker", help="run as worker with this id (started by the master)")
    parser.add_argument("--tasks", help="worker: the task queue")
    parser.add_argument("--results", help="worker: the result queue")
    args = parser.parse_args()
    if args.worker is not None:
        return run_worker(args.address, args.tasks, args.results, args.worker)
    return run_master(args.address)


if __name__ == "__main__":
    raise SystemExit(main())
