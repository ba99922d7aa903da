"""Calling the generated stubs: error conversion and deadlines, in one place.

Every rpc the helper makes goes through :func:`unary` or :func:`stream`, which turn a
``grpc.RpcError`` into the matching :class:`spindle.Error` subclass.

Waiting calls follow common.proto: the wait is bounded inside the call by ``max_wait_ms`` (running
out is a normal answer) and the gRPC deadline is set a margin later, so a caller's timeout comes
back as "not acquired" / "no item" rather than as DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import grpc

from spindle.errors import Error, from_rpc_error

Metadata = Sequence[Tuple[str, str]]

# Added to a wait bound to make the call's deadline: time for the answer to come back.
WAIT_MARGIN_S = 30.0


def unary(method: Callable[..., Any], request: Any, *, timeout: Optional[float],
          metadata: Metadata) -> Any:
    """Calls a unary rpc; raises :class:`spindle.Error` on a non-OK status."""
    try:
        return method(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None


# Pauses before the retries of :func:`unary_idempotent` (seconds).
RETRY_BACKOFF_S = (0.05, 0.2, 0.5, 1.0)


def unary_idempotent(method: Callable[..., Any], request: Any, *, timeout: Optional[float],
                     metadata: Metadata) -> Any:
    """Calls a mutating unary rpc under a request_id, retrying while its answer may have been lost.

    The request gets a fresh ``request_id`` (unless it has one), so a retry after UNAVAILABLE (the
    connection broke: the server may have acted and lost only the reply) gets the first attempt's
    answer instead of acting twice: the same grant, not a second one. A retry that reaches the
    server while the first attempt still waits there takes that wait over, place in line
    included. Retries stay within ``timeout`` from the first attempt; the last error is raised.
    """
    if not request.request_id:
        request.request_id = uuid.uuid4().hex
    give_up = None if timeout is None else time.monotonic() + timeout
    for attempt in range(len(RETRY_BACKOFF_S) + 1):
        left = None if give_up is None else max(0.001, give_up - time.monotonic())
        try:
            return method(request, timeout=left, metadata=metadata)
        except grpc.RpcError as err:
            error: Error = from_rpc_error(err)
        if error.code != grpc.StatusCode.UNAVAILABLE or attempt == len(RETRY_BACKOFF_S):
            raise error from None
        pause = RETRY_BACKOFF_S[attempt]
        if give_up is not None and time.monotonic() + pause >= give_up:
            raise error from None
        time.sleep(pause)
    raise AssertionError("unreachable")


def stream(call: Any) -> Iterator[Any]:
    """Iterates a response stream; raises :class:`spindle.Error` when it ends with a non-OK status."""
    try:
        yield from call
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None


def wait_ms(timeout: Optional[float]) -> int:
    """``max_wait_ms`` for a Python-style timeout in seconds (None = no bound: 0)."""
    if timeout is None:
        return 0
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
    return max(1, int(round(timeout * 1000)))


def wait_deadline(timeout: Optional[float]) -> Optional[float]:
    """The gRPC deadline (seconds) of a call that waits at most ``timeout`` seconds."""
    return None if timeout is None else timeout + WAIT_MARGIN_S
