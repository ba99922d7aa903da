"""A real Prometheus (Debian's) scrapes a running spindled on loopback, with the alert rules loaded
and /metrics behind the token (basic auth, as the chart's ServiceMonitor does it), and answers
queries for `up` and spindle metrics.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from spindled_fixture import TOKEN, TOKEN_NAME, Spindled, run_checks, source

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class State:
    base = ""


def get(path):
    with OPENER.open(State.base + path, timeout=10) as response:
        return json.loads(response.read().decode())


def query(expr):
    return get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(0.5)  # polling Prometheus' scrape loop
    raise AssertionError(f"{what} within {timeout}s; last answer: {last}")


def check_up_is_one():
    result = wait_for("up{job=\"spindle\"} == 1",
                      lambda: [r for r in query('up{job="spindle"}') if r["value"][1] == "1"])
    assert result[0]["metric"]["job"] == "spindle"


def check_spindle_metrics_are_queryable():
    for expr in ("spindle_build_info", "spindle_executor_threads", "spindle_auth_tokens",
                 'sum(grpc_server_handled_total{grpc_service="grpc.health.v1.Health"})'):
        result = wait_for(expr, lambda e=expr: query(e))
        assert float(result[0]["value"][1]) > 0, f"{expr} = {result}"


def check_alert_rules_load_and_evaluate():
    def loaded():
        groups = get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") and
                                      r["health"] == "ok" for r in rules) else None
    rules = wait_for("every rule evaluated with health ok", loaded)
    assert len(rules) >= 5, rules


def main():
    if shutil.which("prometheus") is None:
        print("FAIL prometheus not installed: run scripts/install-deps")
        return 1
    with Spindled("--metrics-require-token") as spindled, \
            tempfile.TemporaryDirectory(prefix="spindle-prometheus-") as work:
        assert spindled.ctl("health").returncode == 0
        password_file = os.path.join(work, "password")
        with open(password_file, "w") as f:
            f.write(TOKEN)
        shutil.copy(source("helm", "spindle", "files", "alerts.yaml"), work)
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yaml]
scrape_configs:
  - job_name: spindle
    basic_auth:
      username: {TOKEN_NAME}
      password_file: {password_file}
    static_configs:
      - targets: ["{spindled.metrics_address}"]
""")
        port = free_port()
        State.base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(work, "prometheus.log"), "w")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=work)
        try:
            wait_for("Prometheus ready", lambda: OPENER.open(State.base + "/-/ready",
                                                             timeout=5).status == 200)
            code = run_checks([check_up_is_one, check_spindle_metrics_are_queryable,
                               check_alert_rules_load_and_evaluate])
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(20)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(10)
            log.close()
        if code:
            print(open(os.path.join(work, "prometheus.log")).read()[-3000:])
        return code


if __name__ == "__main__":
    sys.exit(main())
