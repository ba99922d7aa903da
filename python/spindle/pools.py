"""Remote worker pools (PoolService) with the shapes of ``multiprocessing.Pool`` and
``concurrent.futures``.

A COMMAND pool runs each task as a command in a fresh process on the server's node::

    pool = client.pool("build", size=3)
    results = pool.map([["gzip", "-9", f] for f in files])         # list of TaskResult, in order
    task = pool.submit(["make", "-C", "docs"])                      # a Task (future)
    task.add_done_callback(lambda t: print(t.result().exit_code))   # fired from WatchTasks events

A WORKER pool keeps ``size`` worker processes that speak the framing of ``spindle_worker.py``;
tasks are bytes payloads (``pool.submit(b"...")``, ``pool.map([b"a", b"b"])``).

Thread-safety: thread-safe. Completion callbacks run on the pool's watcher thread, one at a time.
"""

from __future__ import annotations

import logging
import threading
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Union)

import grpc

from spindle import _rpc
from spindle.errors import DeadlineExceeded, Error, OutOfRange, from_rpc_error

if TYPE_CHECKING:
    from spindle.client import Client

__all__ = ["Pool", "Task", "TaskResult", "TaskEvent"]

_log = logging.getLogger("spindle")

# A command task: argv as a list, or a dict {"argv": [...], "env": {...}, "cwd": ..., "input": b""}.
Work = Union[Sequence[str], Dict[str, Any], bytes]


class TaskResult:
    """The outcome of a finished task.

    Attributes:
        outcome: "SUCCEEDED", "FAILED", "CANCELLED" or "TIMED_OUT".
        exit_code: COMMAND tasks: the exit code (-1 when killed by a signal or never run).
        stdout, stderr: COMMAND tasks: the retained output bytes.
        output: WORKER/THREAD tasks: the result bytes.
        error: why it did not succeed ("" on success); error_reason its UPPER_SNAKE kind.
        attempts: attempts made.
    """

    def __init__(self, pb: Any, result: Any) -> None:
        self.outcome: str = pb.TaskState.Name(result.outcome).replace("TASK_STATE_", "")
        self.exit_code: int = result.exit.exit_code if result.HasField("exit") else -1
        self.stdout: bytes = result.stdout_data
        self.stderr: bytes = result.stderr_data
        self.output: bytes = result.output
        self.error: str = result.error
        self.error_reason: str = result.error_reason
        self.attempts: int = result.attempts

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.outcome == "SUCCEEDED"

    def __repr__(self) -> str:
        extra = f", error={self.error!r}" if self.error else ""
        return f"TaskResult({self.outcome}, exit_code={self.exit_code}{extra})"


class TaskEvent:
    """One WatchTasks event: ``type`` ("QUEUED", "STARTED", "SUCCEEDED", ...), ``task_id``,
    ``sequence`` and, for finishing events, ``result``."""

    def __init__(self, pb: Any, event: Any) -> None:
        self.sequence: int = event.sequence
        self.type: str = pb.TaskEventType.Name(event.type).replace("TASK_EVENT_TYPE_", "")
        self.task_id: str = event.task_id
        self.attempt: int = event.attempt
        self.worker_id: str = event.worker_id
        self.result: Optional[TaskResult] = TaskResult(pb, event.result) if event.HasField("result") else None

    def __repr__(self) -> str:
        return f"TaskEvent({self.sequence}, {self.type}, task_id={self.task_id!r})"


class Task:
    """A submitted task, like a ``concurrent.futures.Future``."""

    def __init__(self, pool: "Pool", task_id: str) -> None:
        self.pool = pool
        self.id = task_id
        self._mu = threading.Lock()
        self._result: Optional[TaskResult] = None
        self._callbacks: List[Callable[["Task"], None]] = []

    def result(self, timeout: Optional[float] = None) -> TaskResult:
        """Waits until the task is finished and returns its result (WaitTask).

        Raises:
            TimeoutError (spindle.DeadlineExceeded): not finished within ``timeout`` seconds.
        """
        if self._result is not None:
            return self._result
        pb = self.pool._pb
        response = _rpc.unary(self.pool._stub.WaitTask,
                              pb.WaitTaskRequest(task_id=self.id, max_wait_ms=_rpc.wait_ms(timeout)),
                              timeout=_rpc.wait_deadline(timeout), metadata=self.pool._client.metadata)
        if not response.done:
            raise DeadlineExceeded(f"task {self.id} not finished after {timeout} s",
                                   code=grpc.StatusCode.DEADLINE_EXCEEDED)
        self._set_result(TaskResult(pb, response.task.result))
        return self._result  # type: ignore[return-value]

    def done(self) -> bool:
        """Whether the task is finished (asks the server unless already known)."""
        if self._result is not None:
            return True
        pb = self.pool._pb
        task = _rpc.unary(self.pool._stub.GetTask, pb.GetTaskRequest(task_id=self.id),
                          timeout=self.pool._client.call_timeout, metadata=self.pool._client.metadata).task
        if task.HasField("result") and task.result.outcome != 0:
            self._set_result(TaskResult(pb, task.result))
        return self._result is not None

    def cancel(self) -> bool:
        """Cancels the task (queued: removed; running: its process tree is stopped).

        Returns False when it had already finished otherwise (FAILED_PRECONDITION TASK_FINISHED).
        """
        pb = self.pool._pb
        try:
            _rpc.unary(self.pool._stub.CancelTask, pb.CancelTaskRequest(task_id=self.id),
                       timeout=self.pool._client.call_timeout, metadata=self.pool._client.metadata)
            return True
        except Error as err:
            if err.reason == "TASK_FINISHED":
                return False
            raise

    def add_done_callback(self, fn: Callable[["Task"], None]) -> None:
        """Calls ``fn(task)`` once the task is finished, on the pool's watcher thread (WatchTasks);
        at once on this thread if the result is already known."""
        with self._mu:
            if self._result is None:
                self._callbacks.append(fn)
                fn = None  # type: ignore[assignment]
        if fn is not None:
            fn(self)
            return
        self.pool._watch_for(self)

    def _set_result(self, result: TaskResult) -> None:
        with self._mu:
            if self._result is not None:
                return
            self._result = result
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - as concurrent.futures: log and go on.
                _log.exception("spindle: done callback of task %s failed", self.id)

    def __repr__(self) -> str:
        return f"<spindle.Task {self.id} {self._result or 'pending'}>"


class Pool:
    """A named pool on the server (created if absent with the given settings)."""

    def __init__(self, client: "Client", name: str, *, size: int = 0,
                 worker: Optional[Sequence[str]] = None, max_queued: int = 0,
                 task_timeout: Optional[float] = None, create: bool = True) -> None:
        """
        Args:
            client: the client.
            name: the pool name.
            size: workers (COMMAND: concurrent task processes); 0 = the server's CPU count.
            worker: argv of the worker program for a WORKER pool (tasks are then bytes payloads);
                None for a COMMAND pool.
            max_queued: bound on queued tasks (0 = server default).
            task_timeout: default timeout of each task attempt in seconds.
            create: False to use an existing pool as it is.
        """
        self._client = client
        self.name = name
        self._pb: Any = client.pb.pool_pb2
        self._stub: Any = client.stubs.pool
        self._mu = threading.Lock()
        self._pending: Dict[str, Task] = {}
        self._watcher: Optional[threading.Thread] = None
        self._watch_call: Any = None
        self._closing = threading.Event()
        self.kind = "WORKER" if worker else "COMMAND"
        if create:
            pb = self._pb
            spec = pb.PoolSpec(kind=pb.POOL_KIND_WORKER if worker else pb.POOL_KIND_COMMAND, size=size,
                               max_queued=max_queued,
                               default_task_timeout_ms=int(task_timeout * 1000) if task_timeout else 0)
            if worker:
                spec.worker.command.argv.extend(worker)
            self._unary("CreatePool", pb.CreatePoolRequest(name=name, spec=spec))

    def _unary(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        return _rpc.unary(getattr(self._stub, method), request,
                          timeout=self._client.call_timeout if timeout is None else timeout,
                          metadata=self._client.metadata)

    def _task_spec(self, work: Work, timeout: Optional[float] = None, priority: int = 0,
                   labels: Optional[Dict[str, str]] = None) -> Any:
        spec = self._pb.TaskSpec(priority=priority, labels=labels or {})
        if isinstance(work, (bytes, bytearray)):
            spec.payload = bytes(work)
        else:
            spec.command.CopyFrom(self._command(work))
        if timeout is not None:
            spec.timeout_ms = int(timeout * 1000)
        return spec

    def _command(self, work: Union[Sequence[str], Dict[str, Any]]) -> Any:
        command = self._pb.TaskCommand()
        if isinstance(work, dict):
            command.command.argv.extend(work["argv"])
            command.command.env.set.update(work.get("env", {}))
            command.command.cwd = work.get("cwd", "")
            stdin = work.get("input", b"")
            command.stdin_data = stdin.encode() if isinstance(stdin, str) else stdin
        elif isinstance(work, str):
            raise TypeError("a command is a list of arguments, not a string (use ['sh', '-c', ...])")
        else:
            command.command.argv.extend(work)
        return command

    def submit(self, work: Work, *, timeout: Optional[float] = None, priority: int = 0,
               labels: Optional[Dict[str, str]] = None) -> Task:
        """Queues one task (argv list or dict for a COMMAND pool, bytes for a WORKER pool)."""
        request = self._pb.SubmitTaskRequest(pool=self.name, task=self._task_spec(work, timeout, priority, labels),
                                             wait=True)
        # Waits for room when the pool's queue is full (backpressure), without a deadline.
        response = _rpc.unary(self._stub.SubmitTask, request, timeout=None, metadata=self._client.metadata)
        return Task(self, response.task.id)

    def submit_many(self, works: Iterable[Work], *, timeout: Optional[float] = None,
                    labels: Optional[Dict[str, str]] = None) -> List[Task]:
        """Queues up to 1,000 tasks at once, all or none."""
        specs = [self._task_spec(w, timeout, 0, labels) for w in works]
        response = _rpc.unary(self._stub.SubmitTasks,
                              self._pb.SubmitTasksRequest(pool=self.name, tasks=specs, wait=True),
                              timeout=None, metadata=self._client.metadata)
        return [Task(self, task_id) for task_id in response.task_ids]

    def imap(self, works: Iterable[Work], *, ordered: bool = True, window: int = 0,
             timeout: Optional[float] = None) -> Iterator[TaskResult]:
        """Streams ``works`` through the pool (PoolService.Map); yields results as they come,
        in input order (``ordered``) or completion order."""
        pb = self._pb
        start = pb.PoolMapStart(pool=self.name, window=window,
                                order=pb.POOL_MAP_ORDER_ORDERED if ordered else pb.POOL_MAP_ORDER_UNORDERED)
        if timeout is not None:
            start.timeout_ms = int(timeout * 1000)

        def requests() -> Iterator[Any]:
            yield pb.MapRequest(start=start)
            batch: List[Any] = []
            for index, work in enumerate(works):
                item = pb.PoolMapInput(index=index)
                if isinstance(work, (bytes, bytearray)):
                    item.payload = bytes(work)
                else:
                    item.command.CopyFrom(self._command(work))
                batch.append(item)
                if len(batch) == 100:
                    yield pb.MapRequest(inputs=batch)
                    batch = []
            if batch:
                yield pb.MapRequest(inputs=batch)

        call = self._stub.Map(requests(), metadata=self._client.metadata)
        try:
            for response in _rpc.stream(call):
                for result in response.results:
                    yield TaskResult(pb, result.result)
        finally:
            call.cancel()

    def imap_unordered(self, works: Iterable[Work], **kwargs: Any) -> Iterator[TaskResult]:
        """``imap(works, ordered=False)``."""
        return self.imap(works, ordered=False, **kwargs)

    def map(self, works: Iterable[Work], **kwargs: Any) -> List[TaskResult]:
        """Runs every work item and returns the results in input order."""
        return list(self.imap(works, **kwargs))

    def events(self, *, after_sequence: int = 0) -> Iterator[TaskEvent]:
        """The pool's task events as they happen (WatchTasks); ``after_sequence`` replays first.
        Ends when the pool is deleted; cancel by closing the generator."""
        call = self._stub.WatchTasks(self._pb.WatchTasksRequest(pool=self.name, after_sequence=after_sequence),
                                     metadata=self._client.metadata)
        try:
            for response in _rpc.stream(call):
                yield TaskEvent(self._pb, response.event)
        finally:
            call.cancel()

    # Completion callbacks: one WatchTasks stream per pool object, started on first use. It replays
    # the pool's retained history first, so no finish is missed between a submit and the watch.

    def _watch_for(self, task: Task) -> None:
        with self._mu:
            self._pending[task.id] = task
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name=f"spindle-pool-{self.name}",
                                                 daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        pb = self._pb
        finishing = [pb.TASK_EVENT_TYPE_SUCCEEDED, pb.TASK_EVENT_TYPE_FAILED, pb.TASK_EVENT_TYPE_CANCELLED,
                     pb.TASK_EVENT_TYPE_TIMED_OUT]
        after = 1  # The pool's first event is always a QUEUED one: replay everything after it.
        while not self._closing.is_set():
            request = pb.WatchTasksRequest(pool=self.name, types=finishing, after_sequence=after,
                                         include_output=True)
            self._watch_call = self._stub.WatchTasks(request, metadata=self._client.metadata)
            try:
                for response in self._watch_call:
                    event = response.event
                    after = max(after, event.sequence)
                    with self._mu:
                        task = self._pending.pop(event.task_id, None)
                    if task is not None:
                        task._set_result(TaskResult(pb, event.result))
                return  # The pool was deleted.
            except grpc.RpcError as err:
                if self._closing.is_set() or err.code() == grpc.StatusCode.CANCELLED:
                    return
                error = from_rpc_error(err)
                if isinstance(error, OutOfRange) and error.reason == "EVENTS_EXPIRED":
                    after = 0  # History gone: go live and reconcile the pending tasks by asking.
                    with self._mu:
                        pending = list(self._pending.values())
                    for task in pending:
                        if task.done():
                            with self._mu:
                                self._pending.pop(task.id, None)
                    continue
                if isinstance(error, Error) and error.code in (grpc.StatusCode.NOT_FOUND,
                                                               grpc.StatusCode.UNAUTHENTICATED,
                                                               grpc.StatusCode.PERMISSION_DENIED):
                    _log.warning("spindle: watching pool %s stopped: %s", self.name, error)
                    return
                if self._closing.wait(0.2):
                    return

    def stop_watching(self) -> None:
        """Stops the completion-callback watcher (pending callbacks will not fire)."""
        self._closing.set()
        call = self._watch_call
        if call is not None:
            call.cancel()

    # Lifecycle.

    def info(self) -> Any:
        """The pool: spec, state and statistics (``spindle.v1.Pool``)."""
        return self._unary("GetPool", self._pb.GetPoolRequest(name=self.name)).pool

    def close(self) -> None:
        """No new tasks; queued and running ones still run (``Pool.close()``)."""
        self._unary("ClosePool", self._pb.ClosePoolRequest(name=self.name))

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until a closed pool finished every task; False when the timeout ran out."""
        request = self._pb.JoinPoolRequest(name=self.name, max_wait_ms=_rpc.wait_ms(timeout))
        return _rpc.unary(self._stub.JoinPool, request, timeout=_rpc.wait_deadline(timeout),
                          metadata=self._client.metadata).joined

    def terminate(self) -> None:
        """Cancels queued tasks, stops running ones and the workers (``Pool.terminate()``)."""
        self._unary("TerminatePool", self._pb.TerminatePoolRequest(name=self.name, wait=True))

    def delete(self, force: bool = True) -> None:
        """Deletes the pool and forgets its tasks (``force`` terminates it first)."""
        self.stop_watching()
        self._unary("DeletePool", self._pb.DeletePoolRequest(name=self.name, force=force))

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        """As ``multiprocessing.Pool``'s: terminates the pool (and deletes it)."""
        self.delete(force=True)

    def __repr__(self) -> str:
        return f"<spindle.Pool {self.name!r}>"
