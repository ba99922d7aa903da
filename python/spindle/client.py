"""The Spindle client: one channel to a spindled, and the objects that use it.

    import spindle

    client = spindle.Client("127.0.0.1:50051")          # or SPINDLE_ADDRESS
    with client.lock("jobs/nightly") as lock:            # held under the client's session
        do_work(fence=lock.fencing_token)
    client.queue("jobs").put({"n": 1})
    client.value("counter").add(1)
    client.run(["uname", "-a"]).stdout

Thread-safety: a Client is thread-safe and meant to be shared by the threads of one process. Do
not use one across ``fork()``: create a Client in each process (gRPC channels do not survive a
fork).
"""

from __future__ import annotations

import atexit
import os
import threading
import types
import weakref
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import grpc

from spindle import _rpc, _stubs
from spindle.errors import FailedPrecondition, Unavailable
from spindle.pools import Pool
from spindle.processes import FetchResult, fetch_urls, run
from spindle.queues import Queue
from spindle.session import Session
from spindle.sync import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore
from spindle.values import Pipeline, SharedDict, Value

__all__ = ["Client", "DEFAULT_ADDRESS"]

#: The address used when neither ``address`` nor SPINDLE_ADDRESS is given.
DEFAULT_ADDRESS = "127.0.0.1:50051"

_live_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_live_clients):
        client.close()


class Client:
    """A connection to spindled.

    Attributes:
        address: the server address.
        pb: the generated protobuf modules (``client.pb.lock_pb2`` ...), for calls the helper lacks.
        stubs: the raw gRPC stubs (``client.stubs.lock``, ``.queue``, ``.value``, ``.pool``,
            ``.process``, ``.session``, ``.scheduler``, ``.server``).
        call_timeout: deadline in seconds of calls that do not wait.
        metadata: metadata sent with every call (the bearer token).
    """

    def __init__(self, address: Optional[str] = None, *, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None, call_timeout: float = 30.0,
                 session_ttl: float = 30.0, client_name: str = "",
                 options: Sequence[Tuple[str, Any]] = ()) -> None:
        """
        Args:
            address: host:port of spindled; default $SPINDLE_ADDRESS or 127.0.0.1:50051.
            token: bearer token; default $SPINDLE_TOKEN (none when unset).
            credentials: TLS channel credentials; default an insecure (plaintext) channel.
            call_timeout: deadline in seconds of calls that do not wait.
            session_ttl: TTL in seconds of the client's session (1..3600): how long the server
                keeps a silent client's locks.
            client_name: a name for humans in ListSessions and logs.
            options: extra gRPC channel options.
        """
        self.address = address or os.environ.get("SPINDLE_ADDRESS") or DEFAULT_ADDRESS
        token = token if token is not None else os.environ.get("SPINDLE_TOKEN", "")
        self.metadata: List[Tuple[str, str]] = [("authorization", f"Bearer {token}")] if token else []
        self.call_timeout = call_timeout
        self._session_ttl = session_ttl
        self._client_name = client_name or f"python/{os.getpid()}"
        self.pb = _stubs.load()
        if credentials is not None:
            self._channel = grpc.secure_channel(self.address, credentials, options=list(options))
        else:
            self._channel = grpc.insecure_channel(self.address, options=list(options))
        pb = self.pb
        self.stubs = types.SimpleNamespace(
            session=pb.session_pb2_grpc.SessionServiceStub(self._channel),
            lock=pb.lock_pb2_grpc.LockServiceStub(self._channel),
            queue=pb.queue_pb2_grpc.QueueServiceStub(self._channel),
            value=pb.value_pb2_grpc.ValueServiceStub(self._channel),
            pool=pb.pool_pb2_grpc.PoolServiceStub(self._channel),
            process=pb.process_pb2_grpc.ProcessServiceStub(self._channel),
            scheduler=pb.scheduler_pb2_grpc.SchedulerServiceStub(self._channel),
            server=pb.server_pb2_grpc.ServerServiceStub(self._channel),
        )
        self._mu = threading.Lock()
        self._session: Optional[Session] = None
        self._closed = False
        _live_clients.add(self)

    # Connection.

    def wait_ready(self, timeout: float = 30.0) -> "Client":
        """Waits until the channel is connected; raises :class:`spindle.Unavailable` if not in time."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"spindled at {self.address} not reachable within {timeout} s",
                              code=grpc.StatusCode.UNAVAILABLE) from None
        return self

    def server_info(self) -> Any:
        """Version, addresses and implemented services (``spindle.v1.GetServerInfoResponse``)."""
        return _rpc.unary(self.stubs.server.GetServerInfo, self.pb.server_pb2.GetServerInfoRequest(),
                          timeout=self.call_timeout, metadata=self.metadata)

    @property
    def session(self) -> Session:
        """The client's session, created on first use and kept alive by a background thread.
        A new one replaces it if it ended (its locks were released by then)."""
        with self._mu:
            if self._closed:
                raise FailedPrecondition("the client is closed", reason="CLIENT_CLOSED")
            if self._session is None or self._session.ended.is_set():
                self._session = Session(self, ttl=self._session_ttl, client_name=self._client_name)
            return self._session

    def close(self) -> None:
        """Closes the session (releasing its locks) and the channel. Idempotent."""
        with self._mu:
            if self._closed:
                return
            self._closed = True
            session, self._session = self._session, None
        if session is not None:
            session.close()
        self._channel.close()
        _live_clients.discard(self)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # Synchronisation (LockService).

    def lock(self, name: str, *, owner: Optional[str] = None, lease_ttl: Optional[float] = None) -> Lock:
        """A named mutex (``threading.Lock``); use ``with client.lock(name) as lock:``."""
        return Lock(self, name, owner=owner, lease_ttl=lease_ttl)

    def rlock(self, name: str, *, owner: Optional[str] = None) -> RLock:
        """A named reentrant lock (``threading.RLock``)."""
        return RLock(self, name, owner=owner)

    def semaphore(self, name: str, value: int = 1) -> Semaphore:
        """A named semaphore of ``value`` permits (``threading.Semaphore``)."""
        return Semaphore(self, name, value)

    def bounded_semaphore(self, name: str, value: int = 1) -> BoundedSemaphore:
        """A named bounded semaphore (``threading.BoundedSemaphore``)."""
        return BoundedSemaphore(self, name, value)

    def event(self, name: str) -> Event:
        """A named event (``threading.Event``)."""
        return Event(self, name)

    def barrier(self, name: str, parties: int, *, timeout: Optional[float] = None) -> Barrier:
        """A named barrier of ``parties`` (``threading.Barrier``)."""
        return Barrier(self, name, parties, timeout=timeout)

    def condition(self, name: str, lock: Lock) -> Condition:
        """A named condition bound to ``lock`` (``threading.Condition``)."""
        return Condition(self, name, lock)

    # Queues and values.

    def queue(self, name: str, *, maxsize: int = 0) -> Queue:
        """A named queue (``multiprocessing.Queue``); ``maxsize`` > 0 creates it with that capacity."""
        return Queue(self, name, maxsize=maxsize)

    def value(self, name: str) -> Value:
        """A named shared value (``multiprocessing.Value`` / ``Array``)."""
        return Value(self, name)

    def dict(self, name: str) -> SharedDict:
        """A named shared map as a dict (``Manager().dict()``)."""
        return SharedDict(self, name)

    def value_pipeline(self) -> Pipeline:
        """Value operations sent together on one stream (see :class:`spindle.values.Pipeline`)."""
        return Pipeline(self)

    # Pools, processes, fetches.

    def pool(self, name: str, size: int = 0, *, worker: Optional[Sequence[str]] = None,
             max_queued: int = 0, task_timeout: Optional[float] = None, create: bool = True) -> Pool:
        """A named pool (``multiprocessing.Pool``), created if absent: COMMAND tasks by default,
        WORKER tasks (bytes payloads) with ``worker=argv``."""
        return Pool(self, name, size=size, worker=worker, max_queued=max_queued, task_timeout=task_timeout,
                    create=create)

    def run(self, args: Sequence[str], **kwargs: Any) -> Any:
        """Runs a command on the server's node, like ``subprocess.run`` (see :func:`spindle.processes.run`)."""
        return run(self, args, **kwargs)

    def fetch_urls(self, urls: Sequence[str], **kwargs: Any) -> Iterator[FetchResult]:
        """GETs URLs concurrently on the server (see :func:`spindle.processes.fetch_urls`)."""
        return fetch_urls(self, urls, **kwargs)

    def sleep(self, seconds: float) -> float:
        """Waits on a server timer; returns the seconds the server slept."""
        pb = self.pb.scheduler_pb2
        response = _rpc.unary(self.stubs.scheduler.Sleep, pb.SleepRequest(duration_ms=int(seconds * 1000)),
                              timeout=_rpc.wait_deadline(seconds), metadata=self.metadata)
        return response.slept_ms / 1000.0

    def __repr__(self) -> str:
        return f"<spindle.Client {self.address}>"
