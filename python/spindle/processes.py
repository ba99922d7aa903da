"""``subprocess.run`` on the server's node (ProcessService.Run) and concurrent HTTP fetches
(SchedulerService.FetchUrls).

Thread-safety: functions of a thread-safe client; safe from any thread.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional, Sequence, Union

from spindle import _rpc

if TYPE_CHECKING:
    from spindle.client import Client

__all__ = ["run", "fetch_urls", "FetchResult"]


def run(client: "Client", args: Sequence[str], *, input: Union[bytes, str, None] = None,
        timeout: Optional[float] = None, check: bool = False, text: bool = False,
        env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
        merge_stderr: bool = False) -> "subprocess.CompletedProcess[Any]":
    """Runs a command on the server's node and waits for it, like :func:`subprocess.run`.

    stdout and stderr are always captured (bounded by the server). ``returncode`` is the exit code,
    or ``-signal`` when a signal killed it, as in ``subprocess``.

    Raises:
        subprocess.TimeoutExpired: the command ran longer than ``timeout`` seconds (it was killed).
        subprocess.CalledProcessError: ``check`` and a non-zero return code.
        spindle.FailedPrecondition: the executable is missing (reason EXEC_FAILED).
        spindle.PermissionDenied: the server's spawn policy refuses it.
    """
    if isinstance(args, str):
        raise TypeError("args is a list of arguments, not a string (use ['sh', '-c', ...])")
    pb = client.pb.process_pb2
    spec = pb.ProcessSpec()
    spec.command.argv.extend(args)
    if env is not None:
        spec.command.env.set.update(env)
    if cwd:
        spec.command.cwd = cwd
    if input is not None:
        spec.stdin_mode = pb.PROCESS_STDIN_MODE_DATA
        spec.stdin_data = input.encode() if isinstance(input, str) else input
    if merge_stderr:
        spec.stderr_mode = pb.PROCESS_OUTPUT_MODE_MERGE
    if timeout is not None:
        spec.timeout_ms = max(1, int(timeout * 1000))
        spec.kill_grace_ms = 0
    response = _rpc.unary(client.stubs.process.Run, pb.RunRequest(spec=spec),
                          timeout=_rpc.wait_deadline(timeout), metadata=client.metadata)
    exit_ = response.process.status.exit
    stdout: Any = response.stdout_data
    stderr: Any = response.stderr_data
    if text:
        stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    if exit_.reason == pb.PROCESS_EXIT_REASON_TIMED_OUT:
        raise subprocess.TimeoutExpired(list(args), timeout or 0.0, output=stdout, stderr=stderr)
    code = -exit_.signal_number if exit_.exit_code < 0 and exit_.signal_number else exit_.exit_code
    completed: "subprocess.CompletedProcess[Any]" = subprocess.CompletedProcess(list(args), code, stdout, stderr)
    if check:
        completed.check_returncode()
    return completed


class FetchResult:
    """The outcome of fetching one URL.

    Attributes:
        index: position of the URL in the request.
        url: the URL as requested.
        status: HTTP status code (0 when no response arrived).
        body: the body (bounded by ``max_body_bytes``).
        error: why no complete response arrived ("" on success); error_reason its kind.
        elapsed_ms: total time of the transfer.
    """

    def __init__(self, result: Any) -> None:
        self.index: int = result.index
        self.url: str = result.url
        self.status: int = result.status_code
        self.body: bytes = result.body
        self.headers: Dict[str, str] = {h.name.lower(): h.value for h in result.headers}
        self.error: str = result.error
        self.error_reason: str = result.error_reason
        self.elapsed_ms: int = result.timing.total_ms

    def __repr__(self) -> str:
        what = f"error={self.error_reason}" if self.error else f"status={self.status}, {len(self.body)} bytes"
        return f"FetchResult({self.index}, {self.url!r}, {what})"


def fetch_urls(client: "Client", urls: Sequence[str], *, max_concurrency: int = 0,
               timeout: Optional[float] = None, max_body_bytes: int = 0,
               headers: Optional[Mapping[str, str]] = None) -> Iterator[FetchResult]:
    """GETs every URL on the server's executor, at most ``max_concurrency`` at once, and yields
    one :class:`FetchResult` per URL in completion order. A failed URL is a result with ``error``;
    any HTTP status is a normal result.

    Raises:
        spindle.InvalidArgument: a malformed URL or a scheme other than http/https (INVALID_URL).
    """
    pb = client.pb.scheduler_pb2
    request = pb.FetchUrlsRequest(targets=[pb.FetchTarget(url=u) for u in urls],
                                  max_concurrency=max_concurrency, max_body_bytes=max_body_bytes,
                                  timeout_ms=int(timeout * 1000) if timeout else 0)
    for name, value in (headers or {}).items():
        request.headers.add(name=name, value=value)
    call = client.stubs.scheduler.FetchUrls(request, metadata=client.metadata)
    try:
        for response in _rpc.stream(call):
            if response.WhichOneof("event") == "result":
                yield FetchResult(response.result)
    finally:
        call.cancel()
