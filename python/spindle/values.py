"""Named shared values (ValueService): ``multiprocessing.Value``, ``Array`` and ``Manager().dict()``.

``client.value("counter")`` is one typed, versioned value: ``get()``, ``set()``, atomic ``add()``,
compare-and-swap ``cas()``. Python types map to value types as follows:

=========================== ======================
Python                      value type
=========================== ======================
``int``                     INT64
``float``                   DOUBLE
``bytes``                   BYTES
``str``                     STRING
``list``/``array('q')`` of int     INT64_ARRAY
``list``/``array('d')`` with a float  DOUBLE_ARRAY
``dict`` of str to scalars  MAP
=========================== ======================

Arrays and maps have elements: ``v[3]``, ``v["k"]``, ``v.add(1, key="k")``, ``v.cas(0, 1, index=2)``.
``client.dict("name")`` wraps a MAP value as a ``MutableMapping``.

``client.value_pipeline()`` queues many operations and sends them on one ValueStream, without a
round trip each (Redis pipelining): ``p.add("hits"); p.get("hits"); p.execute()``.

Thread-safety: Value and SharedDict are thread-safe (every method is one rpc); a Pipeline belongs
to one thread.
"""

from __future__ import annotations

import array
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, MutableMapping, NamedTuple, Optional,
                    Tuple, Union)

from spindle import _rpc
from spindle.errors import Error, NotFound, from_status

if TYPE_CHECKING:
    from spindle.client import Client
    from spindle.sync import Lock

__all__ = ["Value", "SharedDict", "Versioned", "ABSENT", "Pipeline"]

Element = Union[int, str, None]
#: A write guard: a held :class:`spindle.Lock`, or (lock name, fencing token).
Fence = Union["Lock", Tuple[str, int], None]


class _Absent:
    def __repr__(self) -> str:
        return "spindle.ABSENT"


#: ``cas(ABSENT, new)`` swaps only if the value (or map key) does not exist.
ABSENT: Any = _Absent()
_NOTSET: Any = object()


class Versioned(NamedTuple):
    """A value read with the store revision of its last change."""
    value: Any
    version: int


def _scalar_to_pb(pb: Any, value: Any, message: Any) -> None:
    """Sets the arm of a ValueScalar or ValueData for a Python scalar."""
    if isinstance(value, bool):
        raise TypeError("bool is not a Spindle value type; use int")
    if isinstance(value, int):
        message.int64_value = value
    elif isinstance(value, float):
        message.double_value = value
    elif isinstance(value, (bytes, bytearray)):
        message.bytes_value = bytes(value)
    elif isinstance(value, str):
        message.string_value = value
    else:
        raise TypeError(f"cannot store {type(value).__name__} as a Spindle scalar")


def to_data(pb: Any, value: Any) -> Any:
    """A Python value as a ``spindle.v1.ValueData``."""
    data = pb.ValueData()
    if isinstance(value, array.array):
        if value.typecode in "bBhHiIlLqQ":
            data.int64_array.items.extend(value)
        elif value.typecode in "fd":
            data.double_array.items.extend(value)
        else:
            raise TypeError(f"array typecode {value.typecode!r} is not int or float")
    elif isinstance(value, (list, tuple)):
        if all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            data.int64_array.items.extend(value)
        elif all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            data.double_array.items.extend(float(x) for x in value)
        else:
            raise TypeError("arrays hold only ints or floats")
        if not value:
            data.int64_array.SetInParent()
    elif isinstance(value, dict):
        data.map_value.SetInParent()
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("map keys must be str")
            _scalar_to_pb(pb, item, data.map_value.entries[key])
    else:
        _scalar_to_pb(pb, value, data)
    return data


def _from_scalar(message: Any) -> Any:
    kind = message.WhichOneof("kind")
    return None if kind is None else getattr(message, kind)


def from_data(data: Any) -> Any:
    """A ``spindle.v1.ValueData`` as a Python value (arrays as lists, maps as dicts)."""
    kind = data.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "int64_array":
        return list(data.int64_array.items)
    if kind == "double_array":
        return list(data.double_array.items)
    if kind == "map_value":
        return {k: _from_scalar(v) for k, v in data.map_value.entries.items()}
    return getattr(data, kind)


class Value:
    """One named value on the server. Absent until first set (or added to)."""

    def __init__(self, client: "Client", name: str) -> None:
        self._client = client
        self.name = name
        self._pb = client.pb.value_pb2
        self._stub = client.stubs.value

    def _unary(self, method: str, request: Any) -> Any:
        return _rpc.unary(getattr(self._stub, method), request, timeout=self._client.call_timeout,
                          metadata=self._client.metadata)

    def _element(self, request: Any, index: Optional[int], key: Optional[str]) -> None:
        if index is not None and key is not None:
            raise ValueError("give index or key, not both")
        if index is not None:
            request.element.index = index
        elif key is not None:
            request.element.key = key

    @staticmethod
    def _fence(request: Any, fence: Fence) -> None:
        if fence is None:
            return
        if isinstance(fence, tuple):
            lock_name, token = fence
        else:
            held = fence.fencing_token
            if held is None:
                raise ValueError(f"fence lock '{fence.name}' is not held")
            lock_name, token = fence.name, held
        request.fence.lock_name = lock_name
        request.fence.fencing_token = token

    def read(self, *, index: Optional[int] = None, key: Optional[str] = None) -> Versioned:
        """The value (or one element) with its version. Raises :class:`spindle.NotFound` if absent."""
        return self._read_result(self._unary("GetValue", self._read_request(index, key)),
                                 index is not None or key is not None)

    def _read_request(self, index: Optional[int], key: Optional[str]) -> Any:
        request = self._pb.GetValueRequest(name=self.name)
        self._element(request, index, key)
        return request

    @staticmethod
    def _read_result(response: Any, element: bool) -> Versioned:
        if element:
            return Versioned(_from_scalar(response.element_data), response.entry.version)
        return Versioned(from_data(response.entry.data), response.entry.version)

    def get(self, default: Any = _NOTSET, *, index: Optional[int] = None, key: Optional[str] = None) -> Any:
        """The value (or one element); ``default`` if given and the value or key is absent."""
        try:
            return self.read(index=index, key=key).value
        except NotFound:
            if default is _NOTSET:
                raise
            return default

    def set(self, value: Any, *, index: Optional[int] = None, key: Optional[str] = None,
            if_version: int = 0, if_absent: bool = False, ttl: Optional[float] = None,
            fence: Fence = None) -> int:
        """Writes the value (or one element); returns the new version.

        Args:
            if_version: write only if the current version is this (else :class:`spindle.Aborted`,
                reason VERSION_MISMATCH).
            if_absent: write only if absent (else :class:`spindle.AlreadyExists`).
            ttl: seconds until the value expires.
            fence: a held :class:`spindle.Lock` (or a (lock name, fencing token) pair): the write
                applies only while that grant is current (else :class:`spindle.Aborted`, reason
                STALE_FENCING_TOKEN).
        """
        return self._unary("SetValue", self._set_request(value, index, key, if_version, if_absent,
                                                         ttl, fence)).entry.version

    def _set_request(self, value: Any, index: Optional[int], key: Optional[str], if_version: int,
                     if_absent: bool, ttl: Optional[float], fence: Fence) -> Any:
        if index is not None or key is not None:
            data = self._pb.ValueData()
            _scalar_to_pb(self._pb, value, data)
        else:
            data = to_data(self._pb, value)
        request = self._pb.SetValueRequest(name=self.name, data=data, only_if_version=if_version,
                                           only_if_absent=if_absent,
                                           ttl_ms=int(ttl * 1000) if ttl else 0)
        self._element(request, index, key)
        self._fence(request, fence)
        return request

    def add(self, delta: Union[int, float] = 1, *, index: Optional[int] = None, key: Optional[str] = None,
            fence: Fence = None) -> Union[int, float]:
        """Atomically adds ``delta`` (creating the value or key as 0); returns the new number."""
        return _from_scalar(self._unary("AddToValue", self._add_request(delta, index, key, fence)).result)

    def _add_request(self, delta: Union[int, float], index: Optional[int], key: Optional[str],
                     fence: Fence) -> Any:
        request = self._pb.AddToValueRequest(name=self.name)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)):
            raise TypeError("delta must be an int or a float")
        if isinstance(delta, int):
            request.int64_delta = delta
        else:
            request.double_delta = delta
        self._element(request, index, key)
        self._fence(request, fence)
        return request

    def cas(self, expected: Any, new: Any, *, index: Optional[int] = None, key: Optional[str] = None,
            version: Optional[int] = None, fence: Fence = None) -> bool:
        """Compare-and-swap: writes ``new`` only if the value (or element) equals ``expected``.

        ``expected`` may be :data:`spindle.ABSENT` (swap only if absent); with ``version=`` the
        comparison is on the version instead and ``expected`` is ignored. Equality is of type and
        data (int 5 != float 5.0). Returns whether it swapped; a failed comparison is not an error.
        """
        return self._unary("CompareAndSwapValue",
                           self._cas_request(expected, new, index, key, version, fence)).swapped

    def _cas_request(self, expected: Any, new: Any, index: Optional[int], key: Optional[str],
                     version: Optional[int], fence: Fence) -> Any:
        element = index is not None or key is not None
        new_data = self._pb.ValueData()
        if element:
            _scalar_to_pb(self._pb, new, new_data)
        else:
            new_data = to_data(self._pb, new)
        request = self._pb.CompareAndSwapValueRequest(name=self.name, new_value=new_data)
        if version is not None:
            request.expected_version = version
        elif expected is ABSENT:
            request.expect_absent = True
        elif element:
            _scalar_to_pb(self._pb, expected, request.expected_value)
        else:
            request.expected_value.CopyFrom(to_data(self._pb, expected))
        self._element(request, index, key)
        self._fence(request, fence)
        return request

    def delete(self, *, key: Optional[str] = None) -> None:
        """Deletes the value (or one map key). Raises :class:`spindle.NotFound` if absent."""
        self._unary("DeleteValue", self._delete_request(key))

    def _delete_request(self, key: Optional[str]) -> Any:
        request = self._pb.DeleteValueRequest(name=self.name)
        self._element(request, None, key)
        return request

    def keys(self) -> List[str]:
        """A map's keys, sorted."""
        return list(self._unary("GetValue", self._pb.GetValueRequest(name=self.name, keys_only=True)).keys)

    def __getitem__(self, element: Union[int, str]) -> Any:
        return self.get(**_selector(element))

    def __setitem__(self, element: Union[int, str], value: Any) -> None:
        self.set(value, **_selector(element))

    def __len__(self) -> int:
        return int(self._unary("GetValue", self._pb.GetValueRequest(name=self.name)).entry.length)

    @property
    def value(self) -> Any:
        """``multiprocessing.Value``'s attribute: ``v.value`` reads, ``v.value = x`` writes."""
        return self.get()

    @value.setter
    def value(self, new: Any) -> None:
        self.set(new)

    def __repr__(self) -> str:
        return f"<spindle.Value {self.name!r}>"


def _selector(element: Union[int, str]) -> Dict[str, Any]:
    if isinstance(element, bool) or not isinstance(element, (int, str)):
        raise TypeError("element must be an int index or a str key")
    return {"index": element} if isinstance(element, int) else {"key": element}


class SharedDict(MutableMapping):  # type: ignore[type-arg]
    """A MAP value as a ``dict``-like object (``Manager().dict()`` across processes).

    Every operation is one rpc on one key; :meth:`add` and :meth:`cas` are atomic per key.
    """

    def __init__(self, client: "Client", name: str) -> None:
        self.value = Value(client, name)
        self.name = name

    def __getitem__(self, key: str) -> Any:
        try:
            return self.value.get(key=key)
        except NotFound:
            raise KeyError(key) from None

    def __setitem__(self, key: str, item: Any) -> None:
        self.value.set(item, key=key)

    def __delitem__(self, key: str) -> None:
        try:
            self.value.delete(key=key)
        except NotFound:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        try:
            return iter(self.value.keys())
        except NotFound:
            return iter(())

    def __len__(self) -> int:
        try:
            return len(self.value)
        except NotFound:
            return 0

    def add(self, key: str, delta: Union[int, float] = 1) -> Union[int, float]:
        """Atomically adds to one entry (absent = 0); returns the new number."""
        return self.value.add(delta, key=key)

    def cas(self, key: str, expected: Any, new: Any) -> bool:
        """Compare-and-swap on one entry (``expected`` may be :data:`spindle.ABSENT`)."""
        return self.value.cas(expected, new, key=key)

    def copy(self) -> Dict[str, Any]:
        """The whole map in one read."""
        try:
            return dict(self.value.get())
        except NotFound:
            return {}

    def __repr__(self) -> str:
        return f"<spindle.SharedDict {self.name!r}>"


class Pipeline:
    """Value operations queued, then sent together on one ValueStream by :meth:`execute`.

    Each method queues one operation (same arguments as :class:`Value`'s) and returns the
    pipeline, so calls chain. :meth:`execute` sends them all, in order, and returns their results
    in that order: ``get`` the value, ``read`` a :class:`Versioned`, ``set`` the new version,
    ``add`` the new number, ``cas`` whether it swapped, ``delete`` None. The server applies them
    one at a time in that order; a failed one changes nothing and the rest still run. As a context
    manager the pipeline executes on a clean exit.
    """

    def __init__(self, client: "Client") -> None:
        self._client = client
        self._pb = client.pb.value_pb2
        self._ops: List[Tuple[Any, Any]] = []  # (request, how to turn the answer into a result)

    def _queue(self, arm: str, request: Any, result: Any) -> "Pipeline":
        message = self._pb.ValueStreamRequest(call_id=len(self._ops) + 1)
        getattr(message, arm).CopyFrom(request)
        self._ops.append((message, result))
        return self

    def read(self, name: str, *, index: Optional[int] = None, key: Optional[str] = None) -> "Pipeline":
        element = index is not None or key is not None
        return self._queue("get_value", Value(self._client, name)._read_request(index, key),
                           lambda r: Value._read_result(r.get_value, element))

    def get(self, name: str, *, index: Optional[int] = None, key: Optional[str] = None) -> "Pipeline":
        element = index is not None or key is not None
        return self._queue("get_value", Value(self._client, name)._read_request(index, key),
                           lambda r: Value._read_result(r.get_value, element).value)

    def set(self, name: str, value: Any, *, index: Optional[int] = None, key: Optional[str] = None,
            if_version: int = 0, if_absent: bool = False, ttl: Optional[float] = None,
            fence: Fence = None) -> "Pipeline":
        request = Value(self._client, name)._set_request(value, index, key, if_version, if_absent,
                                                        ttl, fence)
        return self._queue("set_value", request, lambda r: r.set_value.entry.version)

    def add(self, name: str, delta: Union[int, float] = 1, *, index: Optional[int] = None,
            key: Optional[str] = None, fence: Fence = None) -> "Pipeline":
        request = Value(self._client, name)._add_request(delta, index, key, fence)
        return self._queue("add_to_value", request, lambda r: _from_scalar(r.add_to_value.result))

    def cas(self, name: str, expected: Any, new: Any, *, index: Optional[int] = None,
            key: Optional[str] = None, version: Optional[int] = None, fence: Fence = None) -> "Pipeline":
        request = Value(self._client, name)._cas_request(expected, new, index, key, version, fence)
        return self._queue("compare_and_swap_value", request,
                           lambda r: r.compare_and_swap_value.swapped)

    def delete(self, name: str, *, key: Optional[str] = None) -> "Pipeline":
        return self._queue("delete_value", Value(self._client, name)._delete_request(key),
                           lambda r: None)

    def __len__(self) -> int:
        return len(self._ops)

    def execute(self, *, raise_on_error: bool = True) -> List[Any]:
        """Sends the queued operations and returns their results in order; the queue is emptied.

        A failed operation raises its :class:`spindle.Error` (the first one, after every
        operation ran) or, with ``raise_on_error=False``, stands in the list as that Error.
        """
        ops, self._ops = self._ops, []
        if not ops:
            return []
        stub = self._client.stubs.value
        call = stub.ValueStream(iter([request for request, _ in ops]),
                                timeout=self._client.call_timeout, metadata=self._client.metadata)
        results: List[Any] = []
        first_error: Optional[Error] = None
        for answer in _rpc.stream(call):
            _, convert = ops[len(results)]
            if answer.status.code != 0:
                error = from_status(answer.status)
                first_error = first_error or error
                results.append(error)
            else:
                results.append(convert(answer))
        if len(results) != len(ops):
            raise Error(f"{len(results)} of {len(ops)} operations were answered")
        if raise_on_error and first_error is not None:
            raise first_error
        return results

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.execute()
