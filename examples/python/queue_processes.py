#!/usr/bin/env python3
"""Writer and reader processes sharing one Spindle queue: every item is received exactly once.

The multiprocessing version passes a ``multiprocessing.Queue`` to the children; here the queue is
a name on spindled, so the processes could as well run on different machines. Two writers put 50
items each; two readers take items until the queue is closed and drained (the parent closes it
once the writers are done). Each reader sends back the items it got, and the parent checks that
every item arrived once: none lost, none duplicated.

Last line: ``queue: 100 items put by 2 writers, received by 2 readers, each exactly once``.
"""

from __future__ import annotations

import queue as stdlib_queue
import time
from typing import Any, List

from _common import arguments, processes, spindle, unique

WRITERS = 2
READERS = 2
PER_WRITER = 50


def writer(address: str, name: str, writer_id: int) -> None:
    with spindle.Client(address) as client:
        q = client.queue(name)
        for n in range(PER_WRITER):
            q.put({"writer": writer_id, "n": n})


def reader(address: str, name: str, reader_id: int, report: Any) -> None:
    received: List[str] = []
    deadline = time.monotonic() + 60
    with spindle.Client(address) as client:
        q = client.queue(name)
        while time.monotonic() < deadline:
            try:
                item = q.get(timeout=1.0)
            except stdlib_queue.Empty:
                continue  # Nothing for a second: the writers may still be starting.
            except spindle.QueueDrained:
                break  # Closed and empty: the end of the queue.
            received.append(f"{item['writer']}:{item['n']}")
    report.put((reader_id, received))


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    name = unique("queue")
    ctx = processes()
    report = ctx.Queue()
    readers = [ctx.Process(target=reader, args=(args.address, name, r, report)) for r in range(READERS)]
    writers = [ctx.Process(target=writer, args=(args.address, name, w)) for w in range(WRITERS)]
    for p in readers + writers:
        p.start()
    with spindle.Client(args.address) as client:
        for p in writers:
            p.join(60)
        if any(p.exitcode != 0 for p in writers):
            print("queue: a writer failed")
            return 1
        client.queue(name).close()  # Readers drain what is left, then see QueueDrained.
        got = {}
        for _ in readers:
            reader_id, items = report.get(timeout=60)
            got[reader_id] = items
        for p in readers:
            p.join(30)
        client.queue(name).delete()
    every = [item for items in got.values() for item in items]
    expected = {f"{w}:{n}" for w in range(WRITERS) for n in range(PER_WRITER)}
    for reader_id in sorted(got):
        print(f"reader {reader_id} received {len(got[reader_id])} items")
    once = len(every) == len(set(every)) and set(every) == expected
    print(f"duplicates: {len(every) - len(set(every))}, missing: {len(expected - set(every))}")
    if not once:
        print("queue: FAILED")
        return 1
    print(f"queue: {len(expected)} items put by {WRITERS} writers, received by {READERS} readers, "
          "each exactly once")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
