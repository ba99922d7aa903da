"""The foundation from the outside: health, reflection, ServerService, errors, metrics."""
import json
import urllib.request

import grpc
import pytest

from conftest import buf

SPINDLE_SERVICES = [
    "spindle.v1.LockService",
    "spindle.v1.PoolService",
    "spindle.v1.ProcessService",
    "spindle.v1.QueueService",
    "spindle.v1.SchedulerService",
    "spindle.v1.ServerService",
    "spindle.v1.SessionService",
    "spindle.v1.ValueService",
]


def test_health_is_serving(channel):
    import health_pb2
    import health_pb2_grpc
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_server_info_from_python(channel, spindled):
    from spindle.v1 import server_pb2, server_pb2_grpc
    info = server_pb2_grpc.ServerServiceStub(channel).GetServerInfo(
        server_pb2.GetServerInfoRequest(), timeout=10)
    assert info.listen_address == spindled.address
    assert info.api_version == "spindle.v1"
    assert "spindle.v1.ServerService" in info.services


def test_rejected_request_carries_reason_in_details_and_trailer(channel):
    from spindle.v1 import pool_pb2, pool_pb2_grpc
    stub = pool_pb2_grpc.PoolServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPool(pool_pb2.GetPoolRequest(), timeout=10)  # names no pool
    assert err.value.code() != grpc.StatusCode.OK
    assert err.value.details()
    trailers = dict(err.value.trailing_metadata())
    reason = trailers["spindle-reason"]
    assert reason and reason == reason.upper()
    # The details decode as google.rpc.Status-compatible spindle.v1.Status with an ErrorInfo.
    from spindle.v1 import common_pb2
    status = common_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = common_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == reason and info.domain == "spindle.dev"


def test_reflection_lists_every_spindle_service(spindled):
    result = buf("curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services",
                 f"http://{spindled.address}")
    assert result.returncode == 0, result.stderr
    listed = set(result.stdout.split())
    for service in SPINDLE_SERVICES:
        assert service in listed
    assert "grpc.health.v1.Health" in listed


def test_buf_calls_server_info_over_reflection(spindled):
    result = buf("curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}",
                 f"http://{spindled.address}/spindle.v1.ServerService/GetServerInfo")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["apiVersion"] == "spindle.v1"
    assert info["listenAddress"] == spindled.address


def test_buf_reports_errors_with_nonzero_exit(spindled):
    result = buf("curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}",
                 f"http://{spindled.address}/spindle.v1.PoolService/GetPool")
    assert result.returncode != 0
    assert "invalid_argument" in result.stderr.lower() and "name" in result.stderr


def test_metrics_move_with_calls(channel, spindled):
    from spindle.v1 import server_pb2, server_pb2_grpc
    stub = server_pb2_grpc.ServerServiceStub(channel)
    for _ in range(5):
        stub.GetLimits(server_pb2.GetLimitsRequest(), timeout=10)
    body = urllib.request.urlopen(f"http://{spindled.metrics_address}/metrics", timeout=10).read().decode()
    line = ('grpc_server_handled_total{grpc_code="OK",grpc_method="GetLimits",'
            'grpc_service="spindle.v1.ServerService",grpc_type="unary"} 5')
    assert line in body


def test_sigterm_exits_zero(spindled):
    assert spindled.stop() == 0
    assert any("event=stopped" in line for line in spindled.logs)


def test_value_stream_from_python(channel):
    """A bidi ValueStream driven by Python's generated stub: answers in order, errors per call."""
    from spindle.v1 import value_pb2 as v, value_pb2_grpc as vg
    requests = [v.ValueStreamRequest(call_id=i, add_to_value=v.AddToValueRequest(
        name="py-stream", int64_delta=1)) for i in range(1, 1001)]
    requests.append(v.ValueStreamRequest(call_id=1001, get_value=v.GetValueRequest(
        name="py-stream-never-set")))
    requests.append(v.ValueStreamRequest(call_id=1002))  # no operation
    answers = list(vg.ValueServiceStub(channel).ValueStream(iter(requests), timeout=30))
    assert [a.call_id for a in answers] == list(range(1, 1003))
    assert [a.add_to_value.result.int64_value for a in answers[:1000]] == list(range(1, 1001))
    assert answers[1000].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[1001].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "call 1002" in answers[1001].status.message
    assert not answers[1001].HasField("add_to_value")
