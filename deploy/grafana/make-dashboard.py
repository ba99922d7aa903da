#!/usr/bin/env python3
"""Writes helm/spindle/files/dashboard.json, Spindle's Grafana dashboard, from the panel list below.

Run it after changing a panel:  /usr/bin/python3 deploy/grafana/make-dashboard.py
tests/deploy checks the JSON's structure and that every metric it names exists on spindled.
"""
import json
import os

SEL = 'instance=~"$instance"'

# (row title, [(panel title, unit, [(expr, legend)])])
ROWS = [
    ("RPCs", [
        ("Calls per second by method", "reqps", [
            (f'sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{SEL}}}[$__rate_interval]))',
             "{{grpc_service}}/{{grpc_method}}")]),
        ("Errors per second by code", "reqps", [
            (f'sum by (grpc_code) (rate(grpc_server_handled_total{{{SEL},grpc_code!="OK"}}[$__rate_interval]))',
             "{{grpc_code}}")]),
        ("Latency p50 / p99 (unary)", "s", [
            (f'histogram_quantile(0.5, sum by (le) (rate(grpc_server_handling_seconds_bucket{{{SEL},grpc_type="unary"}}[$__rate_interval])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{{{SEL},grpc_type="unary"}}[$__rate_interval])))', "p99")]),
        ("Calls in flight", "short", [
            (f'sum(spindle_grpc_inflight_calls{{{SEL}}})', "in flight")]),
        ("Refused credentials by reason", "reqps", [
            (f'sum by (reason) (rate(spindle_auth_denied_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")]),
    ]),
    ("Executor", [
        ("Threads, runnable, live coroutines", "short", [
            (f'sum(spindle_executor_threads{{{SEL}}})', "threads"),
            (f'sum(spindle_executor_runnable{{{SEL}}})', "runnable"),
            (f'sum(spindle_executor_live_coroutines{{{SEL}}})', "live coroutines"),
            (f'sum(spindle_executor_pending_timers{{{SEL}}})', "pending timers")]),
        ("Loop lag", "s", [
            (f'max(spindle_executor_loop_lag_seconds{{{SEL}}})', "average"),
            (f'max(spindle_executor_loop_lag_max_seconds{{{SEL}}})', "max")]),
        ("Timer and queue lag p99", "s", [
            (f'histogram_quantile(0.99, sum by (le) (rate(spindle_executor_timer_lag_seconds_bucket{{{SEL}}}[$__rate_interval])))', "timer p99"),
            (f'histogram_quantile(0.99, sum by (le) (rate(spindle_executor_queue_lag_seconds_bucket{{{SEL}}}[$__rate_interval])))', "queue p99")]),
        ("Tasks per second", "ops", [
            (f'sum(rate(spindle_executor_tasks_spawned_total{{{SEL}}}[$__rate_interval]))', "spawned"),
            (f'sum(rate(spindle_executor_tasks_completed_total{{{SEL}}}[$__rate_interval]))', "completed")]),
    ]),
    ("Processes", [
        ("Processes by state", "short", [
            (f'sum by (state) (spindle_processes{{{SEL}}})', "{{state}}")]),
        ("Spawns per second by result", "ops", [
            (f'sum by (result) (rate(spindle_process_spawns_total{{{SEL}}}[$__rate_interval]))', "{{result}}")]),
        ("Spawn latency p50 / p99", "s", [
            (f'histogram_quantile(0.5, sum by (le) (rate(spindle_process_spawn_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(spindle_process_spawn_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99")]),
        ("Exits per second by reason", "ops", [
            (f'sum by (reason) (rate(spindle_process_exits_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")]),
        ("Output bytes per second", "Bps", [
            (f'sum by (stream) (rate(spindle_process_output_bytes_total{{{SEL}}}[$__rate_interval]))', "{{stream}}"),
            (f'sum(rate(spindle_process_output_dropped_bytes_total{{{SEL}}}[$__rate_interval]))', "dropped")]),
    ]),
    ("Worker pools", [
        ("Workers by pool and state", "short", [
            (f'sum by (pool, state) (spindle_pool_workers{{{SEL}}})', "{{pool}} {{state}}")]),
        ("Tasks by pool and state", "short", [
            (f'sum by (pool, state) (spindle_pool_tasks{{{SEL}}})', "{{pool}} {{state}}")]),
        ("Finished tasks per second by outcome", "ops", [
            (f'sum by (pool, outcome) (rate(spindle_pool_tasks_total{{{SEL}}}[$__rate_interval]))', "{{pool}} {{outcome}}")]),
        ("Task run time and queue wait p99", "s", [
            (f'histogram_quantile(0.99, sum by (pool, le) (rate(spindle_pool_task_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{pool}} run p99"),
            (f'histogram_quantile(0.99, sum by (pool, le) (rate(spindle_pool_queue_wait_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{pool}} wait p99")]),
        ("Worker restarts per second", "ops", [
            (f'sum by (pool) (rate(spindle_pool_worker_restarts_total{{{SEL}}}[$__rate_interval]))', "{{pool}}")]),
    ]),
    ("Locks and sessions", [
        ("Acquisitions per second by kind and result", "ops", [
            (f'sum by (kind, result) (rate(spindle_lock_acquisitions_total{{{SEL}}}[$__rate_interval]))', "{{kind}} {{result}}")]),
        ("Lock wait and hold p99", "s", [
            (f'histogram_quantile(0.99, sum by (le) (rate(spindle_lock_wait_seconds_bucket{{{SEL}}}[$__rate_interval])))', "wait p99"),
            (f'histogram_quantile(0.99, sum by (le) (rate(spindle_lock_hold_seconds_bucket{{{SEL}}}[$__rate_interval])))', "hold p99")]),
        ("Held locks, waiters, sessions", "short", [
            (f'sum(spindle_locks_held{{{SEL}}})', "held"),
            (f'sum(spindle_lock_waiters{{{SEL}}})', "waiters"),
            (f'sum(spindle_sessions{{{SEL}}})', "sessions")]),
        ("Session expirations per second", "ops", [
            (f'sum(rate(spindle_session_expirations_total{{{SEL}}}[$__rate_interval]))', "expired")]),
    ]),
    ("Queues and values", [
        ("Queue depth", "short", [
            (f'sum by (queue) (spindle_queue_depth{{{SEL}}})', "{{queue}}")]),
        ("Leased (in flight) items", "short", [
            (f'sum by (queue) (spindle_queue_inflight{{{SEL}}})', "{{queue}}")]),
        ("Items per second by operation", "ops", [
            (f'sum by (op) (rate(spindle_queue_items_total{{{SEL}}}[$__rate_interval]))', "{{op}}")]),
        ("Queue wait p99", "s", [
            (f'histogram_quantile(0.99, sum by (le) (rate(spindle_queue_wait_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99")]),
        ("Values, value operations, watchers", "short", [
            (f'sum(spindle_values{{{SEL}}})', "values"),
            (f'sum by (op) (rate(spindle_value_ops_total{{{SEL}}}[$__rate_interval]))', "{{op}}/s"),
            (f'sum(spindle_watchers{{{SEL}}})', "watchers")]),
    ]),
    ("spindled process", [
        ("CPU seconds per second", "percentunit", [
            (f'rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])', "{{instance}}")]),
        ("Resident memory", "bytes", [
            (f'process_resident_memory_bytes{{{SEL}}}', "{{instance}}")]),
        ("Open file descriptors", "short", [
            (f'process_open_fds{{{SEL}}}', "open"),
            (f'process_max_fds{{{SEL}}}', "max")]),
    ]),
]


def dashboard():
    panels = []
    next_id = 1
    y = 0
    for row_title, row_panels in ROWS:
        panels.append({"id": next_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        for i, (title, unit, targets) in enumerate(row_panels):
            panels.append({
                "id": next_id,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}},
                "targets": [{"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend,
                             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                            for n, (expr, legend) in enumerate(targets)],
            })
            next_id += 1
        y += ((len(row_panels) + 2) // 3) * 8
    return {
        "uid": "spindle-overview",
        "title": "Spindle",
        "description": "RPCs, executor, processes, worker pools, locks, queues and values of spindled.",
        "tags": ["spindle", "grpc"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
             "current": {}, "hide": 0},
            {"name": "instance", "type": "query", "label": "Instance",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(spindle_build_info, instance)", "refId": "instance"},
             "definition": "label_values(spindle_build_info, instance)",
             "includeAll": True, "multi": True, "refresh": 2, "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = os.path.join(root, "helm", "spindle", "files", "dashboard.json")
    with open(out, "w") as f:
        json.dump(dashboard(), f, indent=2)
        f.write("\n")
    print(out)
