#!/usr/bin/env python3
"""The ticket-selling race: 20 processes sell 100 tickets from a shared counter, first without a
lock (read, then write: updates get lost), then under a named Spindle lock (exact).

Each seller sells 5 tickets by reading the counter (a Spindle value) and writing it back minus
one. Without a lock two sellers read the same count and both write count-1, so a sale is lost and
tickets remain although all 100 were sold. With ``with client.lock(name):`` around the
read-modify-write, the count is exact.

A Spindle barrier of 20 parties starts every seller at the same moment in each round.

Last line: ``tickets: with a lock 100 sold, 0 left (exact)``.
"""

from __future__ import annotations

import time
from typing import Any

from _common import arguments, processes, spindle, unique

SELLERS = 20
PER_SELLER = 5
TICKETS = SELLERS * PER_SELLER


def seller(address: str, names: dict, report: Any) -> None:
    with spindle.Client(address) as client:
        start = client.barrier(names["barrier"], SELLERS)

        # Round 1: no lock. The pause between read and write stands for real work.
        counter = client.value(names["unlocked"])
        start.wait(timeout=60)
        for _ in range(PER_SELLER):
            left = counter.get()
            time.sleep(0.002)
            counter.set(left - 1)

        # Round 2: the same read-modify-write under a named lock.
        counter = client.value(names["locked"])
        start.wait(timeout=60)
        for _ in range(PER_SELLER):
            with client.lock(names["lock"]):
                left = counter.get()
                time.sleep(0.002)
                counter.set(left - 1)
    report.put("done")


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    names = {kind: unique(f"tickets-{kind}") for kind in ("unlocked", "locked", "lock", "barrier")}
    with spindle.Client(args.address) as client:
        client.value(names["unlocked"]).set(TICKETS)
        client.value(names["locked"]).set(TICKETS)
        ctx = processes()
        report = ctx.Queue()
        sellers = [ctx.Process(target=seller, args=(args.address, names, report)) for _ in range(SELLERS)]
        for p in sellers:
            p.start()
        for p in sellers:
            p.join(90)
        failed = [p.exitcode for p in sellers if p.exitcode != 0]
        if failed:
            for p in sellers:
                if p.is_alive():
                    p.terminate()
            print(f"tickets: {len(failed)} sellers failed: exit codes {failed}")
            return 1
        unlocked = client.value(names["unlocked"]).get()
        locked = client.value(names["locked"]).get()
        for name in ("unlocked", "locked"):
            client.value(names[name]).delete()
    print(f"without a lock: {TICKETS} sold, {unlocked} left ({unlocked} updates lost)")
    print(f"tickets: with a lock {TICKETS} sold, {locked} left ({'exact' if locked == 0 else 'WRONG'})")
    return 0 if locked == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
