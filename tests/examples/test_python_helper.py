"""Unit tests of the Python helper (python/spindle) against a real spindled: the familiar shapes
work, and errors map to the right exceptions with their gRPC code and spindle-reason."""

from __future__ import annotations

import os
import queue as stdlib_queue
import signal
import subprocess
import threading
import time
import uuid

import grpc
import pytest

import spindle
from conftest import PYTHON, REPO

# Every wait in these tests is bounded; a timeout of the helper is checked against these.
SHORT = 0.3


def name(kind: str) -> str:
    return f"tests/{kind}/{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def client(spindled):
    with spindle.Client(spindled.address, session_ttl=5) as c:
        c.wait_ready(30)
        yield c


@pytest.fixture
def other(spindled):
    """A second client: another session, as another process would have."""
    with spindle.Client(spindled.address, session_ttl=5) as c:
        yield c


def elapsed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


# Stubs and connection.

def test_stubs_generated_concurrently_into_a_fresh_cache(tmp_path):
    # Several processes importing with an empty cache: one generates under a file lock, all work.
    code = "import spindle, spindle._stubs as s; print(s.load().lock_pb2.LockKind.Name(1))"
    env = dict(os.environ, SPINDLE_STUBS_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(REPO / "python"))
    procs = [subprocess.Popen([PYTHON, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(out.strip() == "LOCK_KIND_MUTEX" for out, _ in outs)
    assert len([d for d in (tmp_path / "cache").iterdir() if not d.name.startswith(".")]) == 1


def test_missing_protos_are_reported(tmp_path):
    env = dict(os.environ, SPINDLE_STUBS_CACHE=str(tmp_path / "cache"), SPINDLE_PROTOS=str(tmp_path / "none"),
               PYTHONPATH=str(tmp_path / "none"))
    # A copy of the package outside the repository, so only SPINDLE_PROTOS could find the protos.
    subprocess.run(["cp", "-r", str(REPO / "python" / "spindle"), str(tmp_path)], check=True)
    proc = subprocess.run([PYTHON, "-c", "import spindle; spindle.Client('127.0.0.1:1')"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "FileNotFoundError" in proc.stderr and "SPINDLE_PROTOS" in proc.stderr


def test_server_info(client):
    info = client.server_info()
    assert "spindle.v1.LockService" in info.services
    assert info.api_version == "spindle.v1"


def test_unreachable_server_is_unavailable():
    with spindle.Client("127.0.0.1:1", call_timeout=5) as c:
        with pytest.raises(spindle.Unavailable) as err:
            c.server_info()
        assert isinstance(err.value, ConnectionError)
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(spindle.Unavailable):
            c.wait_ready(SHORT)


def test_address_from_environment(spindled, monkeypatch):
    monkeypatch.setenv("SPINDLE_ADDRESS", spindled.address)
    with spindle.Client() as c:
        assert c.address == spindled.address
        assert c.server_info().listen_address


# Errors.

def test_bad_name_is_invalid_argument_with_reason(client):
    with pytest.raises(spindle.InvalidArgument) as err:
        client.lock("bad name").acquire()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "INVALID_NAME"
    assert isinstance(err.value, ValueError)
    assert "bad name" in err.value.message
    assert "[INVALID_NAME]" in str(err.value)
    for call in (lambda: client.queue("/abs").put(b"x"), lambda: client.value("a b").get(),
                 lambda: client.event("").set(), lambda: client.pool("x y", size=1)):
        with pytest.raises(spindle.InvalidArgument) as err:
            call()
        assert err.value.reason == "INVALID_NAME"


def test_deadline_is_deadline_exceeded(client, other):
    lock = name("deadline")
    held = client.lock(lock)
    held.acquire()
    try:
        pb = other.pb.lock_pb2
        request = pb.AcquireRequest(name=lock, session_id=other.session.id, wait=True)
        from spindle import _rpc

        with pytest.raises(spindle.DeadlineExceeded) as err:
            _rpc.unary(other.stubs.lock.Acquire, request, timeout=SHORT, metadata=other.metadata)
        assert isinstance(err.value, TimeoutError)
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        held.release()


def test_error_from_status_of_an_item(client):
    q = client.queue(name("receipts"))
    q.put(b"x")
    with pytest.raises(spindle.NotFound) as err:
        q.ack("no-such-receipt")
    assert err.value.reason == "RECEIPT_NOT_FOUND"


# Locks.

def test_lock_context_manager_and_fencing_tokens(client):
    lock = client.lock(name("mutex"))
    tokens = []
    for _ in range(3):
        with lock as held:
            assert held is lock
            assert lock.locked()
            tokens.append(lock.fencing_token)
        assert lock.fencing_token is None
    assert tokens == sorted(set(tokens)) and tokens[0] > 0
    assert not lock.locked()


def test_lock_timeout_returns_false(client, other):
    lock = name("contended")
    with client.lock(lock):
        acquired, took = elapsed(other.lock(lock).acquire, timeout=SHORT)
        assert acquired is False
        assert SHORT * 0.8 <= took < SHORT + 10
        acquired, took = elapsed(other.lock(lock).acquire, blocking=False)
        assert acquired is False
    waiter = other.lock(lock)
    assert waiter.acquire(timeout=10)
    waiter.release()


def test_lock_waiter_is_granted_on_release(client, other):
    lock = name("handoff")
    holder = client.lock(lock)
    holder.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(other.lock(lock).acquire(timeout=20)))
    t.start()
    deadline = time.monotonic() + 10
    while holder.describe().lock.waiters == 0 and time.monotonic() < deadline:
        pass  # Until the waiter is queued on the server (each check is an rpc; bounded).
    holder.release()
    t.join(20)
    assert got == [True]


def test_double_acquire_in_one_thread_is_deadlock(client):
    lock_name = name("self")
    lock = client.lock(lock_name)
    lock.acquire()
    try:
        with pytest.raises(spindle.Deadlock) as err:
            lock.acquire(timeout=5)
        assert err.value.reason == "DEADLOCK"
        assert isinstance(err.value, spindle.Aborted)
        # The cycle of one and its lock travel as ErrorInfo metadata.
        assert "waits for" in err.value.metadata["cycle"]
        assert err.value.metadata["locks"] == lock_name
    finally:
        lock.release()


def test_release_unheld_is_lock_not_held(client):
    with pytest.raises(spindle.LockNotHeld) as err:
        client.lock(name("unheld")).release()
    assert isinstance(err.value, RuntimeError)


class _LostReply(grpc.RpcError):
    """What a client sees when the connection breaks after the server acted."""

    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection reset (injected: the server answered, the reply was lost)"

    def trailing_metadata(self):
        return ()


class _DropFirstReply:
    """The real lock stub, except that the first call of each of `methods` reaches the server and
    its answer is then lost."""

    def __init__(self, stub, methods):
        self._stub = stub
        self.request_ids = {m: [] for m in methods}
        for method in methods:
            setattr(self, method, self._flaky(method))

    def _flaky(self, method):
        real = getattr(self._stub, method)

        def call(request, **kwargs):
            self.request_ids[method].append(request.request_id)
            response = real(request, **kwargs)
            if len(self.request_ids[method]) == 1:
                raise _LostReply()
            return response
        return call

    def __getattr__(self, attr):
        return getattr(self._stub, attr)


def test_lost_replies_are_retried_under_one_request_id(client):
    lock = client.lock(name("retry"))
    flaky = _DropFirstReply(lock._stub, ["Acquire", "Release"])
    lock._stub = flaky
    # Without the request id the retry would wait for the grant the first attempt got (a
    # deadlock with itself); with it, it gets that grant.
    assert lock.acquire(timeout=5)
    described = lock.describe()
    assert described.lock.holders == 1
    assert described.holders[0].fencing_token == lock.fencing_token
    lock.release()  # its first reply is lost too: the retry answers as the first time did
    assert not lock.locked()
    for method, ids in flaky.request_ids.items():
        assert len(ids) == 2 and ids[0] == ids[1] and ids[0], (method, ids)
    assert flaky.request_ids["Acquire"][0] != flaky.request_ids["Release"][0]


def test_rlock_is_reentrant(client):
    rlock = client.rlock(name("rlock"))
    with rlock:
        with rlock:
            assert rlock.locked()
        assert rlock.locked()
    assert not rlock.locked()


def test_kind_mismatch(client):
    lock = name("kind")
    client.event(lock).set()
    with pytest.raises(spindle.FailedPrecondition) as err:
        client.lock(lock).acquire(timeout=1)
    assert err.value.reason == "KIND_MISMATCH"


def test_closing_a_client_releases_its_locks(spindled, client):
    lock = name("close")
    c = spindle.Client(spindled.address)
    c.lock(lock).acquire()
    c.close()
    taker = client.lock(lock)
    assert taker.acquire(timeout=10)
    taker.release()


def test_killed_holder_frees_the_lock(spindled, client):
    lock = name("killed")
    code = ("import sys, spindle; c = spindle.Client(sys.argv[1], session_ttl=60); "
            "c.lock(sys.argv[2]).acquire(); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([PYTHON, "-c", code, spindled.address, lock], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO / "python")))
    try:
        assert holder.stdout.readline().strip() == "held"
        assert client.lock(lock).acquire(blocking=False) is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        # The broken KeepAlive stream closes the session at once (not after its 60 s TTL).
        taker = client.lock(lock)
        assert taker.acquire(timeout=3)
        taker.release()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)


def test_semaphore(client, other):
    sem_name = name("sem")
    sem = client.semaphore(sem_name, 2)
    assert sem.acquire() and sem.acquire()
    assert other.semaphore(sem_name, 2).acquire(timeout=SHORT) is False
    assert sem.available() == 0
    sem.release(2)
    assert sem.available() == 2
    sem.release()  # Lease-less: an unbounded semaphore gains a permit, like threading.Semaphore.
    assert sem.available() == 3


def test_bounded_semaphore_refuses_extra_release(client):
    sem = client.bounded_semaphore(name("bsem"), 1)
    with sem:
        pass
    with pytest.raises(spindle.FailedPrecondition) as err:
        sem.release()
    assert err.value.reason == "SEMAPHORE_BOUNDED"


def test_event(client, other):
    ev_name = name("event")
    ev = client.event(ev_name)
    assert not ev.is_set()
    assert ev.wait(SHORT) is False
    timer = threading.Timer(0.1, other.event(ev_name).set)
    timer.start()
    assert ev.wait(20) is True
    timer.join()
    ev.clear()
    assert not ev.is_set()


def test_barrier_trips_and_breaks(client, other):
    bar_name = name("barrier")
    indexes = []
    threads = [threading.Thread(target=lambda c=c: indexes.append(c.barrier(bar_name, 3).wait(20)))
               for c in (client, other, client)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(indexes) == [0, 1, 2]

    lonely = client.barrier(name("barrier-timeout"), 2)
    with pytest.raises(threading.BrokenBarrierError):
        lonely.wait(timeout=SHORT)
    assert lonely.broken
    with pytest.raises(spindle.BrokenBarrier) as err:
        lonely.wait(timeout=SHORT)
    assert err.value.reason == "BARRIER_BROKEN"
    lonely.reset()
    assert not lonely.broken


def test_condition_wait_and_notify(client, other):
    lock_name, cond_name = name("cond-lock"), name("cond")
    ready = client.value(name("cond-ready"))
    ready.set(0)
    woken = []

    def producer():
        # The consumer holds the lock until its wait() releases it, so once this acquire returns
        # the consumer is waiting on the condition.
        cond = other.condition(cond_name, other.lock(lock_name))
        with cond:
            ready.set(1)
            woken.append(cond.notify())

    cond = client.condition(cond_name, client.lock(lock_name))
    t = threading.Thread(target=producer)
    with cond:
        t.start()
        assert cond.wait_for(lambda: ready.get() == 1, timeout=20)
        assert cond.lock.fencing_token  # Held again, under a new grant.
    t.join(30)
    assert woken == [1]
    with cond:
        assert cond.wait(timeout=SHORT) is False  # Nobody notifies: times out, lock held again.
        assert cond.lock.locked()


# Queues.

def test_queue_put_and_get_survive_lost_replies(client):
    q = client.queue(name("retry"))
    flaky = _DropFirstReply(q._stub, ["PutItems", "GetItems"])
    q._stub = flaky
    q.put("only")  # the first reply is lost; the retry must not put it twice
    assert q.qsize() == 1
    # A TAKE get whose answer is lost would lose the item; the retry gets the same item.
    assert q.get(timeout=5) == "only"
    assert q.qsize() == 0
    for method, ids in flaky.request_ids.items():
        assert len(ids) == 2 and ids[0] == ids[1] and ids[0], (method, ids)


def test_queue_round_trips_types(client):
    q = client.queue(name("types"))
    for item in (b"\x00raw", "text", {"a": [1, 2]}, 7, None):
        q.put(item)
    assert [q.get(timeout=5) for _ in range(5)] == [b"\x00raw", "text", {"a": [1, 2]}, 7, None]
    assert q.qsize() == 0 and q.empty()


def test_queue_get_timeout_raises_empty(client):
    q = client.queue(name("empty"))
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    start = time.monotonic()
    with pytest.raises(stdlib_queue.Empty):
        q.get(timeout=SHORT)
    assert SHORT * 0.8 <= time.monotonic() - start < SHORT + 10


def test_full_queue(client):
    q = client.queue(name("full"), maxsize=2)
    q.put_many([1, 2])
    with pytest.raises(spindle.QueueFull) as err:
        q.put_nowait(3)
    assert err.value.reason == "QUEUE_FULL" and err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(err.value, stdlib_queue.Full)
    with pytest.raises(stdlib_queue.Full):
        q.put(3, timeout=SHORT)
    assert q.get() == 1
    q.put(3, timeout=5)


def test_queue_lease_ack_nack(client):
    q = client.queue(name("lease"))
    q.put("job")
    first = q.get(timeout=5, lease=30)
    assert first.value == "job" and first.delivery_count == 1
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()  # Leased: invisible.
    first.nack()
    again = q.get(timeout=5, lease=True)
    assert again.item_id == first.item_id and again.delivery_count == 2
    again.ack()
    with pytest.raises(spindle.Aborted) as err:
        first.ack()  # The first delivery's receipt is stale.
    assert err.value.reason == "DELIVERY_EXPIRED"
    assert q.describe().in_flight == 0


def test_closed_queue(client):
    q = client.queue(name("closed"))
    q.put_many(["a", "b"])
    q.close()
    with pytest.raises(spindle.QueueClosed) as err:
        q.put("c")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert list(q) == ["a", "b"]
    with pytest.raises(spindle.QueueDrained) as err:
        q.get(timeout=5)
    assert err.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert q.delete() == 0


# Values.

def test_value_types_add_and_cas(client):
    v = client.value(name("counter"))
    with pytest.raises(spindle.NotFound) as err:
        v.get()
    assert err.value.reason == "VALUE_NOT_FOUND"
    assert v.get(default=None) is None
    assert v.add(5) == 5 and v.add(-2) == 3
    assert v.cas(3, 10) is True and v.cas(3, 11) is False
    assert v.value == 10
    version = v.read().version
    with pytest.raises(spindle.Aborted) as err:
        v.set(0, if_version=version + 1000)
    assert err.value.reason == "VERSION_MISMATCH"
    assert v.set(0, if_version=version) > version
    with pytest.raises(spindle.AlreadyExists):
        v.set(1, if_absent=True)
    v.delete()
    assert v.cas(spindle.ABSENT, 1.5) is True
    assert v.get() == 1.5 and v.add(1) == 2.5

    s = client.value(name("string"))
    s.set("text")
    with pytest.raises(spindle.FailedPrecondition) as err:
        s.add(1)
    assert err.value.reason == "TYPE_MISMATCH"


def test_value_pipeline(client):
    hits, text = name("pipe-hits"), name("pipe-text")
    p = client.value_pipeline()
    p.set(hits, 10).add(hits, 5).get(hits).read(hits).set(text, "x").add(text, 1).cas(hits, 15, 20)
    p.delete(hits).get(hits)
    assert len(p) == 9
    results = p.execute(raise_on_error=False)
    assert len(p) == 0 and len(results) == 9
    assert isinstance(results[0], int) and results[1:3] == [15, 15]
    assert results[3].value == 15 and results[3].version > results[0]
    assert isinstance(results[5], spindle.FailedPrecondition) and results[5].reason == "TYPE_MISMATCH"
    assert results[6] is True and results[7] is None
    assert isinstance(results[8], spindle.NotFound) and results[8].reason == "VALUE_NOT_FOUND"
    # raise_on_error (the default): the first failure is raised after every operation ran.
    p.add(hits, 1).add(text, 1).add(hits, 1)
    with pytest.raises(spindle.FailedPrecondition):
        p.execute()
    assert client.value(hits).get() == 2
    # Many operations in one go, as a context manager.
    counter = name("pipe-many")
    with client.value_pipeline() as many:
        for _ in range(3000):
            many.add(counter)
    assert client.value(counter).get() == 3000
    assert client.value_pipeline().execute() == []


def test_fenced_writes(client, other):
    lock_name = name("fence")
    v = client.value(name("fenced"))
    with client.lock(lock_name) as lock:
        v.set(1, fence=lock)
        assert v.add(1, fence=lock) == 2
        stale = (lock_name, lock.fencing_token)
    with other.lock(lock_name):
        with pytest.raises(spindle.Aborted) as err:
            v.set(3, fence=stale)
        assert err.value.reason == "STALE_FENCING_TOKEN"
    assert v.get() == 2
    with pytest.raises(ValueError):
        v.set(4, fence=client.lock(lock_name))  # Not held: refused before any call.


def test_array_elements(client):
    a = client.value(name("array"))
    a.set([0, 0, 0])
    assert a.add(2, index=1) == 2
    a[2] = 7
    assert a[-1] == 7 and a.get() == [0, 2, 7] and len(a) == 3
    with pytest.raises(spindle.OutOfRange) as err:
        a[5]
    assert err.value.reason == "INDEX_OUT_OF_RANGE"
    d = client.value(name("doubles"))
    d.set([0.5, 1])
    assert d.get() == [0.5, 1.0]


def test_shared_dict(client):
    d = client.dict(name("dict"))
    assert len(d) == 0 and dict(d) == {}
    d["a"] = 1
    d["b"] = "two"
    assert d.add("a", 4) == 5 and d.add("new") == 1
    assert d.cas("b", "two", "three") and not d.cas("b", "two", "four")
    assert d.cas("c", spindle.ABSENT, 3.0)
    assert d.copy() == {"a": 5, "b": "three", "new": 1, "c": 3.0}
    assert sorted(d) == ["a", "b", "c", "new"] and len(d) == 4
    del d["new"]
    with pytest.raises(KeyError):
        d["new"]
    with pytest.raises(KeyError):
        del d["new"]


# Pools, processes, fetches.

def test_pool_map_submit_and_callbacks(client):
    with client.pool(name("pool"), size=2) as pool:
        results = pool.map([["sh", "-c", f"echo {i}"] for i in range(5)])
        assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(5)]
        assert all(r.ok and r.exit_code == 0 for r in results)
        unordered = sorted(r.stdout for r in pool.imap_unordered([["echo", "x"], ["echo", "y"]]))
        assert unordered == [b"x\n", b"y\n"]

        failed = pool.submit(["sh", "-c", "echo oops >&2; exit 3"])
        result = failed.result(timeout=30)
        assert result.outcome == "FAILED" and result.exit_code == 3 and result.stderr == b"oops\n"
        assert failed.done()

        done = threading.Event()
        seen = []
        task = pool.submit(["echo", "callback"])
        task.add_done_callback(lambda t: (seen.append(t.result().stdout), done.set()))
        assert done.wait(30) and seen == [b"callback\n"]
        late = []
        task.add_done_callback(lambda t: late.append(t.id))  # Already done: runs at once.
        assert late == [task.id]

        slow = pool.submit(["sleep", "30"], timeout=SHORT)
        assert slow.result(timeout=30).outcome == "TIMED_OUT"
        waiting = pool.submit(["sleep", "30"])
        with pytest.raises(spindle.DeadlineExceeded):
            waiting.result(timeout=SHORT)
        assert waiting.cancel()
        assert waiting.result(timeout=30).outcome == "CANCELLED"


def test_missing_pool_is_not_found(client):
    with pytest.raises(spindle.NotFound) as err:
        client.pool(name("nopool"), create=False).info()
    assert err.value.reason == "POOL_NOT_FOUND"


def test_run_like_subprocess(client):
    done = client.run(["sh", "-c", "cat; echo err >&2; exit 4"], input="in")
    assert done.returncode == 4 and done.stdout == b"in" and done.stderr == b"err\n"
    assert client.run(["echo", "hi"], text=True).stdout == "hi\n"
    with pytest.raises(subprocess.CalledProcessError):
        client.run(["false"], check=True)
    with pytest.raises(subprocess.TimeoutExpired):
        client.run(["sleep", "30"], timeout=SHORT)
    killed = client.run(["sh", "-c", "kill -9 $$"])
    assert killed.returncode == -9
    with pytest.raises(spindle.FailedPrecondition) as err:
        client.run(["/nonexistent/program"])
    assert err.value.reason == "EXEC_FAILED"


def test_fetch_urls_validation(client):
    with pytest.raises(spindle.InvalidArgument) as err:
        list(client.fetch_urls(["ftp://example.invalid/"]))
    assert err.value.reason == "INVALID_URL"
    results = list(client.fetch_urls(["http://127.0.0.1:1/"], timeout=5))
    assert len(results) == 1 and results[0].error_reason == "CONNECT_FAILED"


def test_sleep(client):
    assert client.sleep(0.05) >= 0.05
