#!/usr/bin/env python3
"""A barrier of 5 parties: 5 processes line up at a named Spindle barrier before each of 3 rounds.

``threading.Barrier(5)`` works for the threads of one program; LockService's BARRIER kind does the
same for any processes that reach the server. ``wait()`` returns each party's arrival index
(0..4); the last to arrive (index 4) tripped the barrier and runs the round's single action — here,
recording that the round started. A party that waits too long breaks the barrier for everyone
(``spindle.BrokenBarrier``, also a ``threading.BrokenBarrierError``) instead of hanging.

Last line: ``barrier: 5 parties x 3 rounds, each round released together (generations 0-2)``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from _common import arguments, processes, spindle, unique

PARTIES = 5
ROUNDS = 3


def party(address: str, names: dict, party_id: int, report: Any) -> None:
    with spindle.Client(address) as client:
        barrier = client.barrier(names["barrier"], PARTIES)
        started = client.dict(names["started"])
        for round_ in range(ROUNDS):
            time.sleep(random.uniform(0, 0.05))  # Work of uneven length before the barrier.
            index = barrier.wait(timeout=60)
            if index == PARTIES - 1:
                started[f"round-{round_}"] = party_id  # The one action per round.
            report.put((round_, barrier.generation, index, party_id))


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    names = {"barrier": unique("barrier"), "started": unique("barrier-started")}
    ctx = processes()
    report = ctx.Queue()
    parties = [ctx.Process(target=party, args=(args.address, names, p, report)) for p in range(PARTIES)]
    for p in parties:
        p.start()
    arrivals = [report.get(timeout=60) for _ in range(PARTIES * ROUNDS)]
    for p in parties:
        p.join(30)
    ok = True
    generations = set()
    for round_ in range(ROUNDS):
        this_round = [a for a in arrivals if a[0] == round_]
        indexes = sorted(a[2] for a in this_round)
        generations.update(a[1] for a in this_round)
        tripped_by = next(a[3] for a in this_round if a[2] == PARTIES - 1)
        print(f"round {round_}: generation {this_round[0][1]}, arrival indexes {indexes}, "
              f"tripped by party {tripped_by}")
        ok = ok and indexes == list(range(PARTIES)) and len({a[1] for a in this_round}) == 1
    with spindle.Client(args.address) as client:
        actions = client.dict(names["started"]).copy()
        client.value(names["started"]).delete()
        client.barrier(names["barrier"], PARTIES).delete()
    ok = ok and len(actions) == ROUNDS and generations == set(range(ROUNDS))
    if not ok:
        print(f"barrier: FAILED (actions {actions}, generations {sorted(generations)})")
        return 1
    print(f"barrier: {PARTIES} parties x {ROUNDS} rounds, each round released together "
          f"(generations 0-{ROUNDS - 1})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
