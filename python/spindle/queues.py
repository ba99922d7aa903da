"""Named queues (QueueService) with the shape of ``multiprocessing.Queue``.

``q = client.queue("jobs"); q.put({"n": 1}); item = q.get(timeout=5)`` — ``get`` raises the standard
:class:`queue.Empty` when the timeout runs out, ``put(block=False)`` on a full queue raises
:class:`spindle.QueueFull` (also a :class:`queue.Full`).

Items: ``bytes`` travel as they are; ``str`` as UTF-8 and any other value as JSON, marked with the
header ``spindle-codec`` so :meth:`Queue.get` gives back what was put. Programs in other languages
see plain bytes (and can set the header themselves).

Two ways to get (queue.proto): ``get()`` TAKEs the item (at most once); ``get(lease=seconds)``
LEASEs it and returns a :class:`Delivery` that must be acknowledged with ``delivery.ack()`` (or
``queue.ack(delivery)``) before the lease runs out, else the item goes back to the head of the
queue (at least once). Leases are held under the client's session, so a consumer that dies gives
its unacknowledged items back at once.

Thread-safety: thread-safe.
"""

from __future__ import annotations

import json
import queue as _queue
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spindle import _rpc
from spindle.errors import QueueDrained, QueueFull, from_status

if TYPE_CHECKING:
    from spindle.client import Client

__all__ = ["Queue", "Delivery", "encode", "decode"]

CODEC_HEADER = "spindle-codec"


def encode(value: Any) -> Tuple[bytes, Dict[str, str]]:
    """A value as (payload, headers): bytes as is, str as UTF-8, anything else as JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), {}
    if isinstance(value, str):
        return value.encode(), {CODEC_HEADER: "str"}
    return json.dumps(value, separators=(",", ":")).encode(), {CODEC_HEADER: "json"}


def decode(payload: bytes, headers: Dict[str, str]) -> Any:
    """The value :func:`encode` made (bytes when the item has no codec header)."""
    codec = headers.get(CODEC_HEADER, "")
    if codec == "str":
        return payload.decode()
    if codec == "json":
        return json.loads(payload)
    return payload


class Delivery:
    """One leased item: its value and the receipt to acknowledge it.

    Attributes:
        value: the decoded item.
        payload: the raw bytes.
        headers: the item's headers.
        item_id: the server's id of the item.
        delivery_count: deliveries so far, this one included (> 1 after a redelivery).
        receipt: names this delivery for ack / nack / extend.
    """

    def __init__(self, queue: "Queue", item: Any) -> None:
        self._queue = queue
        self.payload: bytes = item.payload
        self.headers: Dict[str, str] = dict(item.headers)
        self.value: Any = decode(self.payload, self.headers)
        self.item_id: str = item.item_id
        self.delivery_count: int = item.delivery_count
        self.receipt: str = item.receipt

    def ack(self) -> None:
        """Removes the item for good. Raises :class:`spindle.Aborted` if the lease ended first."""
        self._queue.ack(self)

    def nack(self, delay: float = 0.0) -> None:
        """Gives the item back to the head of the queue (after ``delay`` seconds)."""
        self._queue.nack(self, delay=delay)

    def __repr__(self) -> str:
        return f"Delivery({self.value!r}, item_id={self.item_id!r}, delivery_count={self.delivery_count})"


class Queue:
    """A named queue on the server, created on first use (or by :meth:`create`)."""

    def __init__(self, client: "Client", name: str, *, maxsize: int = 0) -> None:
        """
        Args:
            client: the client.
            name: the queue name.
            maxsize: when > 0, create the queue with this capacity in items (ALREADY_EXISTS if it
                exists with other settings); 0 uses the queue as it is or the server's defaults.
        """
        self._client = client
        self.name = name
        self._pb = client.pb.queue_pb2
        self._stub = client.stubs.queue
        if maxsize > 0:
            self.create(max_items=maxsize)

    def _unary(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        return _rpc.unary(getattr(self._stub, method), request,
                          timeout=self._client.call_timeout if timeout is None else timeout,
                          metadata=self._client.metadata)

    def _idempotent(self, method: str, request: Any, timeout: Optional[float]) -> Any:
        """A put, get or nack under a request_id, retried when its reply may have been lost: a
        retried put adds nothing twice, a retried get hands back the same items."""
        return _rpc.unary_idempotent(getattr(self._stub, method), request, timeout=timeout,
                                     metadata=self._client.metadata)

    def create(self, *, max_items: int = 0, max_bytes: int = 0, visibility_timeout: float = 0,
               max_deliveries: int = 0, dead_letter_queue: str = "") -> Any:
        """Creates the queue with explicit settings (0 = server default); returns its QueueInfo."""
        config = self._pb.QueueConfig(max_items=max_items, max_bytes=max_bytes,
                                      visibility_timeout_ms=int(visibility_timeout * 1000),
                                      max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue)
        return self._unary("CreateQueue", self._pb.CreateQueueRequest(name=self.name, config=config)).queue

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> str:
        """Puts one item; returns its id.

        Raises:
            spindle.QueueFull: full and ``block`` is False, or still full after ``timeout`` seconds.
            spindle.QueueClosed: the queue is closed.
        """
        return self.put_many([item], block=block, timeout=timeout)[0]

    def put_nowait(self, item: Any) -> str:
        """``put(item, block=False)``."""
        return self.put(item, block=False)

    def put_many(self, items: Iterable[Any], block: bool = True, timeout: Optional[float] = None) -> List[str]:
        """Puts a batch (1..1000 items) all-or-nothing, keeping it contiguous; returns the ids."""
        put_items = []
        for value in items:
            payload, headers = encode(value)
            put_items.append(self._pb.QueuePutItem(payload=payload, headers=headers))
        wait_s = timeout if block else 0.0
        request = self._pb.PutItemsRequest(queue=self.name, items=put_items, wait=block,
                                           max_wait_ms=_rpc.wait_ms(wait_s) if block else 0)
        response = self._idempotent(
            "PutItems", request,
            timeout=_rpc.wait_deadline(wait_s) if block else self._client.call_timeout)
        if not response.enqueued:
            raise QueueFull(f"queue '{self.name}' still full after {timeout} s", reason="QUEUE_FULL",
                            code=QueueFull.code)
        return list(response.item_ids)

    def _get(self, max_items: int, block: bool, timeout: Optional[float],
             lease: Union[None, bool, float]) -> Any:
        wait_s = timeout if block else 0.0
        request = self._pb.GetItemsRequest(queue=self.name, max_items=max_items, wait=block,
                                           max_wait_ms=_rpc.wait_ms(wait_s) if block else 0)
        if lease is not None and lease is not False:
            request.mode = self._pb.QUEUE_GET_MODE_LEASE
            request.session_id = self._client.session.id
            if lease is not True:
                request.visibility_timeout_ms = int(float(lease) * 1000)
        return self._idempotent(
            "GetItems", request,
            timeout=_rpc.wait_deadline(wait_s) if block else self._client.call_timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None, *,
            lease: Union[None, bool, float] = None) -> Any:
        """Takes the item at the head, waiting up to ``timeout`` seconds (None: forever).

        Args:
            lease: None (default) takes the item and returns its value. ``True`` or a number of
                seconds leases it instead and returns a :class:`Delivery` to ``ack()``.
        Raises:
            queue.Empty: no item within the timeout (or at once with ``block=False``).
            spindle.QueueDrained: the queue is closed and has no item left.
        """
        response = self._get(1, block, timeout, lease)
        if not response.items:
            raise _queue.Empty
        item = response.items[0]
        if lease is not None and lease is not False:
            return Delivery(self, item)
        return decode(item.payload, dict(item.headers))

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_many(self, max_items: int, block: bool = True, timeout: Optional[float] = None, *,
                 lease: Union[None, bool, float] = None) -> List[Any]:
        """Up to ``max_items`` ready items (values, or Deliveries with ``lease``); [] on timeout."""
        response = self._get(max_items, block, timeout, lease)
        if lease is not None and lease is not False:
            return [Delivery(self, item) for item in response.items]
        return [decode(item.payload, dict(item.headers)) for item in response.items]

    def ack(self, *deliveries: Union[Delivery, str]) -> None:
        """Acknowledges leased deliveries (or receipts).

        Raises:
            spindle.Aborted: a lease ended before the ack (DELIVERY_EXPIRED: it may be redelivered).
            spindle.NotFound: unknown receipt.
        """
        self._settle("AckItems", self._pb.AckItemsRequest, deliveries)

    def nack(self, *deliveries: Union[Delivery, str], delay: float = 0.0) -> None:
        """Gives leased deliveries back to the head of the queue (after ``delay`` seconds)."""
        self._settle("NackItems", self._pb.NackItemsRequest, deliveries, delay_ms=int(delay * 1000))

    def _settle(self, method: str, request_type: Any, deliveries: Tuple[Union[Delivery, str], ...],
                **fields: Any) -> None:
        receipts = [d.receipt if isinstance(d, Delivery) else d for d in deliveries]
        request = request_type(queue=self.name, receipts=receipts, **fields)
        response = self._idempotent(method, request, timeout=self._client.call_timeout)
        for result in response.results:
            if result.status.code != 0:
                raise from_status(result.status)

    def close(self) -> None:
        """Closes the queue: puts fail from now on, getters drain it, then get QueueDrained."""
        self._unary("CloseQueue", self._pb.CloseQueueRequest(name=self.name))

    def delete(self) -> int:
        """Deletes the queue and its items; returns how many items were dropped."""
        return self._unary("DeleteQueue", self._pb.DeleteQueueRequest(name=self.name)).dropped_items

    def purge(self) -> int:
        """Removes the ready and delayed items; returns how many."""
        return self._unary("PurgeQueue", self._pb.PurgeQueueRequest(name=self.name)).purged

    def describe(self) -> Any:
        """Settings and live counts (``spindle.v1.QueueInfo``)."""
        return self._unary("DescribeQueue", self._pb.DescribeQueueRequest(name=self.name)).queue

    def qsize(self) -> int:
        """Ready items now."""
        return self.describe().depth

    def empty(self) -> bool:
        """Whether no item is ready now."""
        return self.qsize() == 0

    def __iter__(self) -> Iterator[Any]:
        """Takes items until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except QueueDrained:
                return

    def __repr__(self) -> str:
        return f"<spindle.Queue {self.name!r}>"
