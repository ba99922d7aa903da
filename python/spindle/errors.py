"""Exceptions raised by the Spindle helper.

Every failed call raises a subclass of :class:`Error` chosen by the gRPC status code, carrying the
code, the server's message and the machine-readable reason the server sends in the
``spindle-reason`` trailer (and in the status details as a ``spindle.v1.ErrorInfo``), e.g.
``QUEUE_FULL`` or ``INVALID_NAME``. Where Python has a familiar exception for the same condition
the class derives from it too, so ``except ValueError`` catches a bad name and ``except
TimeoutError`` a passed deadline.

Normal "did not get it" answers are not errors: ``lock.acquire(timeout=...)`` returns False,
``queue.get(timeout=...)`` raises the standard :class:`queue.Empty`, as their Python models do.
"""

from __future__ import annotations

import queue as _queue
import threading as _threading
from typing import Dict, Optional, Type

import grpc

__all__ = [
    "Error", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "QueueFull", "QueueClosed", "QueueDrained", "BrokenBarrier", "Deadlock", "LockNotHeld",
    "from_rpc_error", "from_status",
]

_REASON_TRAILER = "spindle-reason"
_DETAILS_TRAILER = "grpc-status-details-bin"


class Error(Exception):
    """A Spindle call failed.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode``).
        reason: the UPPER_SNAKE reason from the ``spindle-reason`` trailer, "" when none was sent.
        message: the server's message (says what was wrong, with which name or value).
        metadata: extra context from the ErrorInfo (e.g. ``{"cycle": ...}`` for DEADLOCK).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None, reason: str = "",
                 metadata: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.reason = reason
        self.metadata: Dict[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        reason = f" [{self.reason}]" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


class Cancelled(Error):
    """CANCELLED: the call was cancelled."""
    code = grpc.StatusCode.CANCELLED


class Unknown(Error):
    """UNKNOWN."""
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(Error, ValueError):
    """INVALID_ARGUMENT: malformed request, bad name (reason INVALID_NAME), out-of-range field."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(Error, TimeoutError):
    """DEADLINE_EXCEEDED: the call's deadline passed (while waiting: nothing was granted or taken)."""
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(Error, LookupError):
    """NOT_FOUND: no such process, pool, task, queue, value, lock, lease or session."""
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(Error):
    """ALREADY_EXISTS: the name exists with other settings."""
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(Error):
    """PERMISSION_DENIED: the spawn policy or the caller's role refuses it."""
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    """RESOURCE_EXHAUSTED: a limit was reached (queue full without waiting, too many waiters...)."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(Error):
    """FAILED_PRECONDITION: the object is not in a state that allows it (closed queue, lock not held...)."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(Error):
    """ABORTED: retry the read-modify-write (version mismatch, stale fencing token, deadlock)."""
    code = grpc.StatusCode.ABORTED


class OutOfRange(Error):
    """OUT_OF_RANGE: e.g. a closed queue is drained, an array index is out of range."""
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(Error, NotImplementedError):
    """UNIMPLEMENTED: the server does not offer this rpc (reason NOT_IMPLEMENTED)."""
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(Error):
    """INTERNAL: a bug in the server."""
    code = grpc.StatusCode.INTERNAL


class Unavailable(Error, ConnectionError):
    """UNAVAILABLE: the server is unreachable or draining; safe to retry with a request_id."""
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(Error):
    """DATA_LOSS."""
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(Error):
    """UNAUTHENTICATED: missing or wrong credentials (set ``token=`` or SPINDLE_TOKEN)."""
    code = grpc.StatusCode.UNAUTHENTICATED


class QueueFull(ResourceExhausted, _queue.Full):
    """A put without waiting found the queue full (reason QUEUE_FULL); also a :class:`queue.Full`."""


class QueueClosed(FailedPrecondition):
    """A put on a closed queue (reason QUEUE_CLOSED)."""


class QueueDrained(OutOfRange):
    """A get on a closed queue that has no item left (reason QUEUE_DRAINED): the end of the queue."""


class BrokenBarrier(FailedPrecondition, _threading.BrokenBarrierError):
    """The barrier is broken (reason BARRIER_BROKEN); also a :class:`threading.BrokenBarrierError`."""


class Deadlock(Aborted):
    """The acquire would close a waits-for cycle (reason DEADLOCK); ``metadata["cycle"]`` names it."""


class LockNotHeld(FailedPrecondition, RuntimeError):
    """Release of a lock that is not held (reason LOCK_NOT_HELD), like Python's RuntimeError."""


_BY_CODE: Dict[grpc.StatusCode, Type[Error]] = {
    cls.code: cls for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
        PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
        Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}

_BY_REASON: Dict[str, Type[Error]] = {
    "QUEUE_FULL": QueueFull,
    "QUEUE_CLOSED": QueueClosed,
    "QUEUE_DRAINED": QueueDrained,
    "BARRIER_BROKEN": BrokenBarrier,
    "DEADLOCK": Deadlock,
    "LOCK_NOT_HELD": LockNotHeld,
}


def _parse_details(blob: bytes) -> Dict[str, str]:
    """ErrorInfo.metadata (plus "reason") from a serialized spindle.v1.Status, {} if unreadable."""
    try:
        from spindle import _stubs

        pb = _stubs.load().common_pb2
        status = pb.Status()
        status.ParseFromString(blob)
        for detail in status.details:
            info = pb.ErrorInfo()
            if detail.Unpack(info):
                out = dict(info.metadata)
                out["reason"] = info.reason
                return out
    except Exception:  # noqa: BLE001 - details are best effort; the trailer is authoritative.
        pass
    return {}


def from_rpc_error(err: grpc.RpcError) -> Error:
    """Converts a ``grpc.RpcError`` into the matching :class:`Error` subclass."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else str(err)) or ""
    reason = ""
    metadata: Dict[str, str] = {}
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == _REASON_TRAILER:
            reason = value.decode() if isinstance(value, bytes) else str(value)
        elif key == _DETAILS_TRAILER and isinstance(value, bytes):
            metadata = _parse_details(value)
    if not reason:
        reason = metadata.get("reason", "")
    metadata.pop("reason", None)
    return _class_for(code, reason)(message, code=code, reason=reason, metadata=metadata)


def _class_for(code: grpc.StatusCode, reason: str) -> Type[Error]:
    by_code = _BY_CODE.get(code, Error)
    cls = _BY_REASON.get(reason)
    # A known reason under an unexpected code: trust the code.
    return cls if cls is not None and issubclass(cls, by_code) else by_code


def from_status(status: object) -> Error:
    """Converts a ``spindle.v1.Status`` message (a per-item outcome inside a response) to an Error."""
    number = getattr(status, "code", 2)
    code = next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)
    reason = ""
    metadata: Dict[str, str] = {}
    try:
        from spindle import _stubs

        pb = _stubs.load().common_pb2
        for detail in getattr(status, "details", ()):
            info = pb.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
                break
    except Exception:  # noqa: BLE001 - best effort, as in from_rpc_error.
        pass
    return _class_for(code, reason)(getattr(status, "message", ""), code=code, reason=reason,
                                    metadata=metadata)
