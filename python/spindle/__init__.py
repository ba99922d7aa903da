"""spindle: a thin Python helper over Spindle's gRPC API.

The familiar shapes of ``threading``, ``multiprocessing`` and ``subprocess``, backed by a spindled
that every process of a cluster can reach::

    import spindle

    client = spindle.Client()                     # $SPINDLE_ADDRESS or 127.0.0.1:50051
    with client.lock("jobs/nightly") as lock:     # LockService, under a kept-alive session
        print(lock.fencing_token)
    q = client.queue("jobs"); q.put({"n": 1}); q.get(timeout=5)
    client.value("counter").add(1)
    client.pool("p", size=3).map([["echo", str(i)] for i in range(10)])
    client.run(["uname", "-r"]).stdout

Needs only the standard library, grpcio and protobuf. The gRPC stubs are generated from the
repository's ``protos/`` (or ``$SPINDLE_PROTOS``) on first use with Debian's ``protoc`` and
``grpc_python_plugin`` and cached (see :mod:`spindle._stubs`).

Errors are :class:`spindle.Error` subclasses carrying the gRPC code and the server's reason
(``err.code``, ``err.reason``); see :mod:`spindle.errors`.
"""

from spindle.client import DEFAULT_ADDRESS, Client
from spindle.errors import (Aborted, AlreadyExists, BrokenBarrier, Cancelled, DataLoss, Deadlock,
                            DeadlineExceeded, Error, FailedPrecondition, Internal, InvalidArgument,
                            LockNotHeld, NotFound, OutOfRange, PermissionDenied, QueueClosed,
                            QueueDrained, QueueFull, ResourceExhausted, Unauthenticated, Unavailable,
                            Unimplemented, Unknown)
from spindle.pools import Pool, Task, TaskEvent, TaskResult
from spindle.processes import FetchResult
from spindle.queues import Delivery, Queue
from spindle.session import LockLost, Session
from spindle.sync import Barrier, BoundedSemaphore, Condition, Event, Grant, Lock, RLock, Semaphore
from spindle.values import ABSENT, Pipeline, SharedDict, Value, Versioned

__version__ = "0.1.0"

__all__ = [
    "Client", "DEFAULT_ADDRESS",
    "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Barrier", "Condition", "Grant",
    "Session", "LockLost", "Queue", "Delivery", "Value", "SharedDict", "Versioned", "ABSENT", "Pipeline",
    "Pool", "Task", "TaskEvent", "TaskResult", "FetchResult",
    "Error", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "QueueFull", "QueueClosed", "QueueDrained", "BrokenBarrier", "Deadlock", "LockNotHeld",
]
