#!/usr/bin/env python3
"""A shared Value, Array and dict updated by several processes: typed values, atomic add, CAS.

The multiprocessing version uses ``Value('i')``, ``Array('q', 4)`` and ``Manager().dict()``, whose
updates need the value's lock. Spindle's values are typed and versioned on the server, and their
updates are atomic without a lock:

* ``hits``: an int64 counter, ``add(1)``;
* ``seconds``: a double, ``add(0.5)``;
* ``slots``: an int64 array of 4 elements, ``add(1, index=i)``;
* ``stats``: a map, ``add(1, key=worker)`` and a compare-and-swap loop on ``"cas_total"``
  (read, then ``cas(old, old + 1)``; a failed swap means another process got there first: retry).

Last line: ``shared: hits=100 seconds=50.0 slots=[25, 25, 25, 25] cas_total=100 workers=4``.
"""

from __future__ import annotations

from typing import Any

from _common import arguments, processes, spindle, unique

WORKERS = 4
ROUNDS = 25


def worker(address: str, names: dict, worker_id: int, report: Any) -> None:
    retries = 0
    with spindle.Client(address) as client:
        hits = client.value(names["hits"])
        seconds = client.value(names["seconds"])
        slots = client.value(names["slots"])
        stats = client.dict(names["stats"])
        for n in range(ROUNDS):
            hits.add(1)
            seconds.add(0.5)
            slots.add(1, index=(worker_id + n) % 4)
            stats.add(f"worker-{worker_id}", 1)
            while True:  # Compare-and-swap: a failed swap means another worker won; read again.
                old = stats["cas_total"]
                if stats.cas("cas_total", old, old + 1):
                    break
                retries += 1
    report.put((worker_id, retries))


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    names = {kind: unique(f"shared-{kind}") for kind in ("hits", "seconds", "slots", "stats")}
    with spindle.Client(args.address) as client:
        client.value(names["hits"]).set(0)                 # int64
        client.value(names["seconds"]).set(0.0)            # double
        client.value(names["slots"]).set([0, 0, 0, 0])     # int64 array of 4
        client.value(names["stats"]).set({"cas_total": 0})  # map
        ctx = processes()
        report = ctx.Queue()
        workers = [ctx.Process(target=worker, args=(args.address, names, w, report)) for w in range(WORKERS)]
        for p in workers:
            p.start()
        retries = dict(report.get(timeout=60) for _ in workers)
        for p in workers:
            p.join(30)
        hits = client.value(names["hits"]).read()
        seconds = client.value(names["seconds"]).get()
        slots = client.value(names["slots"]).get()
        stats = client.dict(names["stats"]).copy()
        for name in names.values():
            client.value(name).delete()
    print(f"hits is an int64 at version {hits.version}; CAS retries per worker: {retries}")
    print(f"stats: {dict(sorted(stats.items()))}")
    per_worker = [stats.get(f"worker-{w}") for w in range(WORKERS)]
    print(f"shared: hits={hits.value} seconds={seconds} slots={slots} cas_total={stats.get('cas_total')} "
          f"workers={sum(1 for c in per_worker if c == ROUNDS)}")
    exact = (hits.value == WORKERS * ROUNDS and seconds == WORKERS * ROUNDS * 0.5
             and slots == [WORKERS * ROUNDS // 4] * 4 and stats.get("cas_total") == WORKERS * ROUNDS)
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
