"""Named synchronisation primitives (LockService) with the shapes of Python's ``threading``.

``Lock``, ``RLock``, ``Semaphore``/``BoundedSemaphore``, ``Event``, ``Barrier`` and ``Condition``,
shared by every program that reaches the server. Grants are held under the client's session (kept
alive by a background thread), so a client that dies frees its locks at once. Every grant carries
a fencing token (:attr:`Lock.fencing_token`) that only grows per name: pass it to the resource you
protect (e.g. ``Value.set(..., fence=lock)``) so it can reject a stale holder.

Differences from ``threading`` worth knowing:

* Acquiring a ``Lock`` the same thread already holds raises :class:`spindle.Deadlock` at once
  (Python would hang); so does any acquire that would close a waits-for cycle across names.
* ``acquire(timeout=...)`` waits on the server (no client thread polls); a timeout returns False.
* The identity used for reentrancy and deadlock detection is (session, owner); the owner defaults
  to one id per Python thread, as ``threading.RLock`` expects.

Thread-safety: every object here is thread-safe and may be shared between threads of one process.
Do not share one across processes: create a ``spindle.Client`` in each process instead.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from spindle import _rpc
from spindle.errors import BrokenBarrier, Error, LockNotHeld

if TYPE_CHECKING:
    from spindle.client import Client

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Barrier", "Condition",
           "Grant"]

_HOST = socket.gethostname()[:40]


def _thread_owner() -> str:
    """An owner id unique to this thread of this process on this host (<= 128 bytes)."""
    return f"{_HOST}/{os.getpid()}/{threading.get_ident()}"


def _py_timeout(blocking: bool, timeout: Optional[float]) -> Optional[float]:
    """threading's (blocking, timeout) pair as seconds to wait: 0 = try, None = forever."""
    if not blocking:
        if timeout not in (None, -1):
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0.0
    if timeout is None or timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return float(timeout)


class Grant:
    """One grant of a lock: its lease id (the capability to release it) and fencing token."""

    def __init__(self, grant: Any) -> None:
        self.lease_id: str = grant.lease_id
        self.fencing_token: int = grant.fencing_token
        self.held_count: int = grant.held_count
        self.permits: int = grant.permits

    def __repr__(self) -> str:
        return f"Grant(fencing_token={self.fencing_token}, held_count={self.held_count})"


class _Primitive:
    """What every named primitive shares: the client, the name, the lock protos."""

    def __init__(self, client: "Client", name: str) -> None:
        self._client = client
        self.name = name
        self._pb = client.pb.lock_pb2
        self._stub = client.stubs.lock

    def _unary(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        return _rpc.unary(getattr(self._stub, method), request,
                          timeout=self._client.call_timeout if timeout is None else timeout,
                          metadata=self._client.metadata)

    def describe(self) -> Any:
        """The lock as DescribeLock shows it (``spindle.v1.DescribeLockResponse``)."""
        return self._unary("DescribeLock", self._pb.DescribeLockRequest(name=self.name))

    def delete(self) -> None:
        """Deletes the idle name (FAILED_PRECONDITION reason LOCK_IN_USE while held or waited on)."""
        self._unary("DeleteLock", self._pb.DeleteLockRequest(name=self.name))

    def _acquire(self, kind: int, wait_s: Optional[float], *, owner: str, permits: int = 0,
                 config: Any = None, lease_ttl: Optional[float] = None) -> Optional[Grant]:
        """One Acquire under the client's session; the grant, or None when not acquired in time."""
        request = self._pb.AcquireRequest(
            name=self.name, kind=kind, session_id=self._client.session.id, owner=owner,
            permits=permits, wait=wait_s != 0.0, max_wait_ms=_rpc.wait_ms(wait_s) if wait_s else 0,
            lease_ttl_ms=int(lease_ttl * 1000) if lease_ttl else 0)
        if config is not None:
            request.config.CopyFrom(config)
        response = _rpc.unary_idempotent(
            self._stub.Acquire, request,
            timeout=_rpc.wait_deadline(wait_s) if wait_s != 0.0 else self._client.call_timeout,
            metadata=self._client.metadata)
        return Grant(response.grant) if response.acquired else None

    def _release(self, lease_id: str, **fields: Any) -> Any:
        return _rpc.unary_idempotent(self._stub.Release,
                                     self._pb.ReleaseRequest(lease_id=lease_id, **fields),
                                     timeout=self._client.call_timeout,
                                     metadata=self._client.metadata)


class Lock(_Primitive):
    """A named mutex, ``threading.Lock`` across processes and machines.

    ``with client.lock("jobs/nightly") as lock: ... lock.fencing_token ...``
    """

    _kind_name = "LOCK_KIND_MUTEX"

    def __init__(self, client: "Client", name: str, *, owner: Optional[str] = None,
                 lease_ttl: Optional[float] = None) -> None:
        """
        Args:
            client: the client whose session holds the grants.
            name: the lock name (1..128 bytes of [A-Za-z0-9._:/-]).
            owner: fixed owner id; default one per Python thread.
            lease_ttl: optional seconds after which a grant ends by itself unless refreshed
                (default: it lives as long as the session).
        """
        super().__init__(client, name)
        self._owner = owner
        self._lease_ttl = lease_ttl
        self._mu = threading.Lock()
        self._grant: Optional[Grant] = None

    @property
    def kind(self) -> int:
        return self._pb.LockKind.Value(self._kind_name)

    def acquire(self, blocking: bool = True, timeout: Optional[float] = -1) -> bool:
        """Acquires the lock, waiting in FIFO order; returns False when the timeout ran out.

        Raises:
            spindle.Deadlock: the acquire would close a waits-for cycle (e.g. this thread holds it).
            spindle.InvalidArgument: bad name.
            spindle.FailedPrecondition: the name is another kind of lock (KIND_MISMATCH).
        """
        grant = self._acquire(self.kind, _py_timeout(blocking, timeout),
                              owner=self._owner or _thread_owner(), lease_ttl=self._lease_ttl)
        if grant is None:
            return False
        with self._mu:
            self._grant = grant
        return True

    def release(self) -> None:
        """Releases the lock; raises :class:`spindle.LockNotHeld` when this object holds no grant."""
        with self._mu:
            grant, self._grant = self._grant, None
        if grant is None:
            raise LockNotHeld(f"release of lock '{self.name}' that this object does not hold",
                              reason="LOCK_NOT_HELD")
        self._release(grant.lease_id)

    def locked(self) -> bool:
        """Whether anyone holds the lock now."""
        try:
            return self.describe().lock.holders > 0
        except Error as err:
            if err.reason == "LOCK_NOT_FOUND":
                return False
            raise

    @property
    def grant(self) -> Optional[Grant]:
        """The grant this object holds, None when not held."""
        return self._grant

    @property
    def fencing_token(self) -> Optional[int]:
        """The fencing token of the held grant (grows with every grant of this name); None when not held."""
        grant = self._grant
        return grant.fencing_token if grant else None

    @property
    def lease_id(self) -> Optional[str]:
        """The lease id of the held grant; None when not held."""
        grant = self._grant
        return grant.lease_id if grant else None

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<spindle.{type(self).__name__} {self.name!r} token={self.fencing_token}>"


class RLock(Lock):
    """A named reentrant lock, ``threading.RLock``: the owning thread may acquire it again."""

    _kind_name = "LOCK_KIND_REENTRANT"

    def __init__(self, client: "Client", name: str, *, owner: Optional[str] = None,
                 lease_ttl: Optional[float] = None) -> None:
        super().__init__(client, name, owner=owner, lease_ttl=lease_ttl)
        self._grants: Dict[str, Grant] = {}

    def acquire(self, blocking: bool = True, timeout: Optional[float] = -1) -> bool:
        """Acquires (or re-acquires) the lock for this thread; False when the timeout ran out."""
        owner = self._owner or _thread_owner()
        grant = self._acquire(self.kind, _py_timeout(blocking, timeout), owner=owner,
                              lease_ttl=self._lease_ttl)
        if grant is None:
            return False
        with self._mu:
            self._grants[owner] = grant
            self._grant = grant
        return True

    def release(self) -> None:
        """Drops one hold of this thread; the lock is free when the count reaches 0."""
        owner = self._owner or _thread_owner()
        with self._mu:
            grant = self._grants.get(owner)
        if grant is None:
            raise LockNotHeld(f"cannot release un-acquired lock '{self.name}'", reason="LOCK_NOT_HELD")
        remaining = self._release(grant.lease_id).remaining
        with self._mu:
            if remaining == 0:
                self._grants.pop(owner, None)
                if self._grant is grant:
                    self._grant = None
            else:
                grant.held_count = remaining


class Semaphore(_Primitive):
    """A named counting semaphore, ``threading.Semaphore(value)``.

    ``release()`` gives back a permit this object acquired; with none held it adds a permit to
    the semaphore, as Python's ``Semaphore.release()`` does (``BoundedSemaphore`` refuses that).
    """

    _bounded = False

    def __init__(self, client: "Client", name: str, value: int = 1) -> None:
        super().__init__(client, name)
        if value < 1:
            raise ValueError("semaphore initial value must be >= 1")
        self.value = value
        self._mu = threading.Lock()
        self._held: List[Grant] = []

    def _config(self) -> Any:
        return self._pb.LockConfig(permits=self.value, bounded=self._bounded)

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Takes one permit, waiting in FIFO order; False when the timeout ran out."""
        # A fresh owner per acquire: one thread may hold several permits without a self-cycle.
        grant = self._acquire(self._pb.LOCK_KIND_SEMAPHORE, _py_timeout(blocking, timeout),
                              owner=f"{_thread_owner()}/{uuid.uuid4().hex[:8]}", permits=1,
                              config=self._config())
        if grant is None:
            return False
        with self._mu:
            self._held.append(grant)
        return True

    def release(self, n: int = 1) -> None:
        """Gives back ``n`` permits: the ones this object holds first, then lease-less ones."""
        if n < 1:
            raise ValueError("n must be one or more")
        for _ in range(n):
            with self._mu:
                grant = self._held.pop() if self._held else None
            if grant is not None:
                self._release(grant.lease_id)
            else:
                _rpc.unary_idempotent(self._stub.Release,
                                      self._pb.ReleaseRequest(name=self.name, count=1),
                                      timeout=self._client.call_timeout,
                                      metadata=self._client.metadata)

    def available(self) -> int:
        """Permits free now."""
        return self.describe().lock.available_permits

    def __enter__(self) -> "Semaphore":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """``threading.BoundedSemaphore``: permits only come back through releases of grants."""

    _bounded = True


class Event(_Primitive):
    """A named event, ``threading.Event``: a flag with set / clear / wait."""

    def set(self) -> None:
        """Sets the flag and wakes every waiter."""
        self._unary("SetEvent", self._pb.SetEventRequest(name=self.name))

    def clear(self) -> None:
        """Clears the flag."""
        self._unary("ClearEvent", self._pb.ClearEventRequest(name=self.name))

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._unary("WaitEvent", self._pb.WaitEventRequest(name=self.name, wait=False)).set

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the flag is set; returns False when the timeout ran out first."""
        if timeout is not None and timeout <= 0:
            return self.is_set()
        request = self._pb.WaitEventRequest(name=self.name, wait=True, max_wait_ms=_rpc.wait_ms(timeout),
                                            owner=_thread_owner())
        return _rpc.unary(self._stub.WaitEvent, request, timeout=_rpc.wait_deadline(timeout),
                          metadata=self._client.metadata).set


class Barrier(_Primitive):
    """A named barrier of ``parties``, ``threading.Barrier`` across processes.

    ``wait()`` returns the arrival index (0..parties-1; parties-1 tripped it). A timeout breaks the
    barrier for everyone; waits on a broken barrier raise :class:`spindle.BrokenBarrier` (also a
    ``threading.BrokenBarrierError``) until :meth:`reset`.
    """

    def __init__(self, client: "Client", name: str, parties: int, *, timeout: Optional[float] = None) -> None:
        super().__init__(client, name)
        self.parties = parties
        self._timeout = timeout
        self.generation: Optional[int] = None

    def wait(self, timeout: Optional[float] = None) -> int:
        """Arrives and waits for the other parties; returns this caller's arrival index.

        Raises:
            spindle.BrokenBarrier: the barrier broke (a timeout here or in another party, abort, reset).
        """
        timeout = self._timeout if timeout is None else timeout
        request = self._pb.WaitBarrierRequest(name=self.name, parties=self.parties,
                                              max_wait_ms=_rpc.wait_ms(timeout), owner=_thread_owner())
        response = _rpc.unary(self._stub.WaitBarrier, request, timeout=_rpc.wait_deadline(timeout),
                              metadata=self._client.metadata)
        if not response.tripped:
            raise BrokenBarrier(f"barrier '{self.name}' timed out and is broken", reason="BARRIER_BROKEN",
                                code=BrokenBarrier.code, metadata={"cause": "timeout"})
        self.generation = response.generation
        return response.arrival_index

    def reset(self) -> None:
        """Breaks the current generation (its waiters fail) and returns the barrier to empty."""
        self._unary("ResetBarrier", self._pb.ResetBarrierRequest(name=self.name))

    def abort(self) -> None:
        """Breaks the barrier: waiters and later callers fail until :meth:`reset`."""
        self._unary("AbortBarrier", self._pb.AbortBarrierRequest(name=self.name))

    @property
    def n_waiting(self) -> int:
        """Parties waiting in the current generation."""
        return self.describe().lock.barrier_waiting

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self.describe().lock.barrier_broken


class Condition(_Primitive):
    """A named condition variable bound to a :class:`Lock` or :class:`RLock`, ``threading.Condition``.

    ``with cond: while not ready(): cond.wait()`` — the lock is released while waiting and held
    again (a new grant, new fencing token) when ``wait`` returns.
    """

    def __init__(self, client: "Client", name: str, lock: Lock) -> None:
        super().__init__(client, name)
        self.lock = lock

    def __enter__(self) -> "Condition":
        self.lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()

    def _held_grant(self) -> Tuple[Grant, Optional[str]]:
        if isinstance(self.lock, RLock):
            owner = self.lock._owner or _thread_owner()
            grant = self.lock._grants.get(owner)
        else:
            owner, grant = None, self.lock._grant
        if grant is None:
            raise LockNotHeld(f"cannot wait on condition '{self.name}': lock '{self.lock.name}' not held",
                              reason="LOCK_NOT_HELD")
        return grant, owner

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Releases the lock, waits for a notify, re-acquires; False when the timeout ran out."""
        grant, owner = self._held_grant()
        request = self._pb.WaitConditionRequest(name=self.name, lease_id=grant.lease_id,
                                                max_wait_ms=_rpc.wait_ms(timeout))
        # Under a request_id: a retry after a lost answer gets the grant the wait re-acquired.
        response = _rpc.unary_idempotent(self._stub.WaitCondition, request,
                                         timeout=_rpc.wait_deadline(timeout),
                                         metadata=self._client.metadata)
        new = Grant(response.grant)
        with self.lock._mu:
            self.lock._grant = new
            if owner is not None:
                self.lock._grants[owner] = new  # type: ignore[attr-defined]
        return response.notified

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """Waits until ``predicate()`` is true (checked under the lock); returns its last value."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> int:
        """Wakes up to ``n`` waiters; returns how many were woken."""
        grant = self.lock._grant
        request = self._pb.NotifyConditionRequest(name=self.name, count=n,
                                                  lease_id=grant.lease_id if grant else "")
        return self._unary("NotifyCondition", request).woken

    def notify_all(self) -> int:
        """Wakes every waiter; returns how many were woken."""
        grant = self.lock._grant
        request = self._pb.NotifyConditionRequest(name=self.name, all=True,
                                                  lease_id=grant.lease_id if grant else "")
        return self._unary("NotifyCondition", request).woken
