"""A client session kept alive by a background thread (SessionService.KeepAlive).

Locks and semaphore permits taken through the helper are held under the client's session: when
the process dies, its KeepAlive stream breaks and the server (``close_on_disconnect``) releases
everything at once; when the client stops pinging for the TTL, the session expires. The thread
pings every TTL/3, reconnects the stream (resuming the event sequence) after a transient error,
and records the session's events: ``lock_lost`` (a grant ended without a release: stop using its
fencing token) and ``ended``.

Thread-safety: thread-safe. The keep-alive thread is a daemon thread; :meth:`Session.close` stops
it and closes the session on the server.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, List

import grpc

from spindle import _rpc
from spindle.errors import Error

if TYPE_CHECKING:
    from spindle.client import Client

__all__ = ["Session", "LockLost"]

_log = logging.getLogger("spindle")


class LockLost:
    """A grant held under the session ended without a release (KeepAlive ``lock_lost``)."""

    def __init__(self, name: str, fencing_token: int, cause: str, message: str) -> None:
        self.name = name
        self.fencing_token = fencing_token
        self.cause = cause  # "LEASE_EXPIRED", "REVOKED" or "SESSION_ENDED"
        self.message = message

    def __repr__(self) -> str:
        return f"LockLost(name={self.name!r}, fencing_token={self.fencing_token}, cause={self.cause!r})"


class Session:
    """A server session with a background keep-alive.

    Attributes:
        id: the server's session id.
        ttl: the TTL in seconds.
        ended: a ``threading.Event`` set once the session has ended (expired or closed).
        lost_locks: every :class:`LockLost` event seen, oldest first.
    """

    def __init__(self, client: "Client", *, ttl: float = 30.0, client_name: str = "") -> None:
        pb = client.pb.session_pb2
        ttl_ms = int(ttl * 1000)
        response = _rpc.unary(client.stubs.session.CreateSession,
                              pb.CreateSessionRequest(ttl_ms=ttl_ms, client_name=client_name),
                              timeout=client.call_timeout, metadata=client.metadata)
        self._client = client
        self.id: str = response.session.session_id
        self.ttl: float = response.session.ttl_ms / 1000.0
        self.ended = threading.Event()
        self.lost_locks: List[LockLost] = []
        self._listeners: List[Callable[[LockLost], None]] = []
        self._mu = threading.Lock()
        self._stop = threading.Event()
        self._last_seq = 0
        self._call: Any = None
        self._established = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"spindle-keepalive-{self.id[:8]}",
                                        daemon=True)
        self._thread.start()
        # Until the server has seen the first ping, a crash of this process would leave the session
        # to its TTL instead of closing it at once (close_on_disconnect): wait for the first answer.
        self._established.wait(client.call_timeout)

    def on_lock_lost(self, callback: Callable[[LockLost], None]) -> None:
        """Calls ``callback(event)`` (on the keep-alive thread) for every grant lost from now on."""
        with self._mu:
            self._listeners.append(callback)

    def close(self) -> None:
        """Closes the session: the server releases its locks and permits. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        pb = self._client.pb.session_pb2
        try:
            if not self.ended.is_set():
                _rpc.unary(self._client.stubs.session.CloseSession,
                           pb.CloseSessionRequest(session_id=self.id),
                           timeout=self._client.call_timeout, metadata=self._client.metadata)
        except Error as err:
            _log.debug("spindle: closing session %s: %s", self.id, err)
        finally:
            self.ended.set()
            call = self._call
            if call is not None:
                call.cancel()
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=5)

    # The keep-alive thread.

    def _pings(self, first: Any) -> Iterator[Any]:
        pb = self._client.pb.session_pb2
        yield first
        ping_id = 1
        while not self._stop.wait(self.ttl / 3):
            yield pb.KeepAliveRequest(ping_id=ping_id)
            ping_id += 1

    def _run(self) -> None:
        pb = self._client.pb.session_pb2
        backoff = 0.05
        while not self._stop.is_set():
            first = pb.KeepAliveRequest(session_id=self.id, close_on_disconnect=True,
                                        after_event_seq=self._last_seq)
            try:
                self._call = self._client.stubs.session.KeepAlive(self._pings(first),
                                                                  metadata=self._client.metadata)
                for message in self._call:
                    backoff = 0.05
                    self._established.set()
                    if message.event_seq:
                        self._last_seq = max(self._last_seq, message.event_seq)
                    kind = message.WhichOneof("message")
                    if kind == "lock_lost":
                        self._lock_lost(message.lock_lost)
                    elif kind == "ended":
                        self.ended.set()
                        return
                if self._stop.is_set():
                    return
            except grpc.RpcError as err:
                self._established.set()  # Do not hold up the caller; the loop retries.
                if self._stop.is_set():
                    return
                if err.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    _log.warning("spindle: session %s ended: %s", self.id, err.details())
                    self.ended.set()
                    return
                _log.debug("spindle: keep-alive of %s broke (%s); reconnecting", self.id, err.code())
            # Reconnect after a transient failure, well within the TTL.
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, max(0.05, self.ttl / 6))

    def _lock_lost(self, event: Any) -> None:
        pb = self._client.pb.session_pb2
        cause = pb.KeepAliveResponse.LockLostCause.Name(event.cause).replace("LOCK_LOST_CAUSE_", "")
        lost = LockLost(event.name, event.fencing_token, cause, event.message)
        with self._mu:
            self.lost_locks.append(lost)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(lost)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the keep-alive.
                _log.exception("spindle: lock-lost listener failed")
