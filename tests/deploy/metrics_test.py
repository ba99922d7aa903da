"""The metrics side of the deployment: a running spindled's /metrics passes `promtool check
metrics`, the Grafana dashboard is well-formed, and every metric the dashboard and the alert rules
name exists on /metrics.

Capabilities that are not merged yet cannot show their metrics: expected_metrics.json lists the
names each capability will export (as its issue specifies), and a name of a capability whose
service GetServerInfo does not report as implemented is skipped, with a note. Names of implemented
capabilities, and every name outside the list, must be on /metrics.
"""
import json
import re
import subprocess
import sys

import yaml

from spindled_fixture import Spindled, run_checks, source

DASHBOARD = source("helm", "spindle", "files", "dashboard.json")
ALERTS = source("helm", "spindle", "files", "alerts.yaml")
EXPECTED = source("tests", "deploy", "expected_metrics.json")

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta", "deriv",
    "histogram_quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "bool", "offset", "abs", "absent", "label_values", "topk", "bottomk",
    "clamp_min", "clamp_max", "time", "vector", "scalar", "humanize", "inf", "nan",
}


def metric_names(expr):
    """The metric names a PromQL expression selects (histogram suffixes kept)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)              # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                         # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                        # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        after = expr[m.end():].lstrip()
        if word.lower() in PROMQL_WORDS or after.startswith("("):
            continue
        names.add(word)
    return names


def family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return name


def dashboard_exprs():
    with open(DASHBOARD) as f:
        board = json.load(f)
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def alert_exprs():
    with open(ALERTS) as f:
        rules = yaml.safe_load(f)
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


class State:
    body = ""
    families = set()
    implemented = []


def families_on(body):
    families = set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif line and not line.startswith("#"):
            families.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return families


def check_promtool_accepts_metrics():
    result = subprocess.run(["promtool", "check", "metrics"], input=State.body, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def check_dashboard_structure():
    with open(DASHBOARD) as f:
        board = json.load(f)
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        assert key in board, f"dashboard has no {key}"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "instance"} <= variables, f"variables: {variables}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    titles = {p["title"] for p in board["panels"] if p["type"] == "row"}
    for row in ("RPCs", "Executor", "Processes", "Worker pools", "Locks and sessions",
                "Queues and values"):
        assert row in titles, f"no row '{row}'"
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel '{panel['title']}' has no query"
        for target in panel["targets"]:
            assert target["expr"] and target["refId"], panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert 'instance=~"$instance"' in target["expr"], f"unfiltered: {target['expr']}"


def check_rules_are_valid():
    result = subprocess.run(["promtool", "check", "rules", ALERTS], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    names = {r["alert"] for g in yaml.safe_load(open(ALERTS))["groups"] for r in g["rules"]}
    for alert in ("SpindleHighErrorRate", "SpindleLockWaitP99High", "SpindleQueueDepthGrowing",
                  "SpindleSpawnFailures", "SpindleExecutorLag"):
        assert alert in names, f"no alert {alert}"


def check_every_queried_metric_exists():
    with open(EXPECTED) as f:
        expected = json.load(f)
    pending = {}  # metric -> capability not implemented yet
    lazy = set()
    for capability, entry in expected.items():
        if capability.startswith("_") or "service" not in entry:
            continue
        if entry["service"] not in State.implemented:
            for name in entry["metrics"]:
                pending[name] = capability
        else:
            lazy.update(entry.get("lazy", []))
    used = set()
    for expr in dashboard_exprs() + alert_exprs():
        used |= metric_names(expr)
    assert len(used) > 40, f"found only {len(used)} metric names: {sorted(used)}"
    missing, skipped = [], []
    for name in sorted(used):
        family = family_of(name, State.families | set(pending) | lazy)
        if name == "up" or family in State.families or name in State.families:
            continue
        if family in pending:
            skipped.append(f"{family} ({pending[family]})")
        elif family in lazy:
            skipped.append(f"{family} (appears with data)")
        else:
            missing.append(name)
    if skipped:
        print("note: not checked, capability not implemented by this server yet or no data: " +
              ", ".join(sorted(set(skipped))))
    assert not missing, f"queried but not on /metrics nor expected: {missing}"


def main():
    with Spindled() as spindled:
        # One call of each kind so the per-method gRPC families have children.
        assert spindled.ctl("health").returncode == 0
        info = spindled.ctl("--json", "info")
        assert info.returncode == 0, info.stderr
        State.implemented = json.loads(info.stdout)["services"]
        State.body = spindled.metrics()
        State.families = families_on(State.body)
    print("services implemented: " + ", ".join(State.implemented))
    return run_checks([check_promtool_accepts_metrics, check_dashboard_structure,
                       check_rules_are_valid, check_every_queried_metric_exists])


if __name__ == "__main__":
    sys.exit(main())
