"""spindlectl end to end: every command group run as a user would, against the real spindled.

One spindled serves the module (each test uses its own names); the token, server-down and
completion tests need their own setup. Every wait is bounded: subprocess timeouts, --max-wait-ms,
--count and --timeout-ms on the commands, and polls with deadlines.

Environment (set by ctest): SPINDLECTL (binary path), plus what conftest.py needs.
"""
import base64
import http.server
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import Spindled

CTL = os.environ.get("SPINDLECTL", "")

pytestmark = pytest.mark.skipif(not CTL, reason="SPINDLECTL is not set")

# Exit codes (services/spindlectl/cli.h).
OK, ERROR, USAGE, NOT_FOUND, TIMEOUT, UNAVAILABLE, CONFLICT, DENIED = 0, 1, 2, 3, 4, 5, 6, 7


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINDLE_")}
    env.update(extra or {})
    return env


class Ctl:
    """Runs spindlectl against one address."""

    def __init__(self, address, env=None):
        self.address = address
        self.env = _env(env)

    def argv(self, args):
        return [CTL, "--address", self.address, *args]

    def __call__(self, *args, input=None, timeout=30):
        """Runs spindlectl ARGS to completion; returns the CompletedProcess (text)."""
        return subprocess.run(self.argv(args), input=input, capture_output=True, text=True,
                              timeout=timeout, env=self.env,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args, input=None):
        """Runs spindlectl ARGS, asserts exit 0 and returns its stdout."""
        r = self(*args, input=input)
        assert r.returncode == OK, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def json(self, *args, input=None):
        """Runs spindlectl --json ARGS, asserts exit 0 and returns the JSON lines parsed."""
        out = self.ok("--json", *args, input=input)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def popen(self, *args, stdin=subprocess.DEVNULL):
        return subprocess.Popen(self.argv(args), stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)


def read_line(stream, timeout=15):
    """The next line of a pipe, or AssertionError after `timeout` seconds."""
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no line within {timeout} s") from None


def poll(check, timeout=15, interval=0.05, what="condition"):
    """Calls check() until it returns something truthy; returns that. Bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


def finish(proc, timeout=15):
    """Waits for a background spindlectl (small output only); kills it if it overstays. Returns
    (code, rest of stdout, stderr). Reads through the pipes' file objects, not communicate(),
    which would skip what read_line() left in their buffers."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args} still running after {timeout} s:\n"
                             f"{proc.stdout.read()}\n{proc.stderr.read()}")
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out, err


def gone(pid):
    """Whether `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def server():
    s = Spindled()
    yield s
    s.stop()


@pytest.fixture
def ctl(server):
    return Ctl(server.address)


# ---- server ----

def test_server_commands(ctl, server):
    assert ctl.ok("health").strip() == "SERVING"
    info = ctl.json("info")[0]
    assert info["listen_address"] == server.address
    assert info["api_version"] == "spindle.v1"
    assert "spindle.v1.ProcessService" in info["services"]
    # Global options work after the command too.
    assert json.loads(ctl.ok("info", "--json"))["api_version"] == "spindle.v1"
    limits = ctl.json("limits")[0]
    assert int(limits["max_processes"]) > 0
    assert "max_processes" in ctl.ok("limits")
    stats = ctl.json("stats")[0]
    assert int(stats["executor"]["threads"]) > 0 and "processes" in stats["tables"]
    assert "executor.threads" in ctl.ok("stats")


# ---- processes ----

def test_run_passes_output_and_exit_code_through(ctl):
    r = ctl("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = ctl("run", "-i", "-e", "GREETING=hi", "--", "sh", "-c", 'echo "$GREETING $(cat)"',
            input="there")
    assert (r.returncode, r.stdout) == (OK, "hi there\n")
    assert ctl("run", "--", "sh", "-c", "kill -9 $$").returncode == 128 + 9
    result = ctl.json("run", "--merge", "--", "sh", "-c", "echo a; echo b >&2")[0]
    assert base64.b64decode(result["stdout_data"]) == b"a\nb\n"
    assert result["process"]["status"]["exit"]["exit_code"] == 0
    r = ctl("run", "--", "/nonexistent/tool")
    assert r.returncode == CONFLICT and "/nonexistent/tool" in r.stderr


def test_spawn_ps_wait_logs_kill(ctl):
    # -l before -- once made `-c` "not expected": a list option swallowed the --.
    pid = ctl.ok("spawn", "--name", "cli-tree", "-l", "suite=cli-tree", "--",
                 "sh", "-c", "sleep 300 & echo $!; sleep 300 & echo $!; echo ready >&2; wait")
    pid = pid.strip()
    assert ctl.ok("wait", "--running", pid).split()[1] == "RUNNING"
    rows = ctl.json("ps", "--state", "running", "-l", "suite=cli-tree")
    assert [p["id"] for p in rows] == [pid]
    assert rows[0]["spec"]["name"] == "cli-tree"
    assert pid in ctl.ok("ps", "--prefix", "cli-tree")
    children = [int(x) for x in poll(
        lambda: len(ctl.ok("logs", "--stream", "stdout", pid).split()) == 2
        and ctl.ok("logs", "--stream", "stdout", pid).split(), what="both children started")]
    r = ctl("logs", "--stream", "stderr", pid)  # stderr output goes to spindlectl's stderr
    assert (r.returncode, r.stdout, r.stderr) == (OK, "", "ready\n")
    r = ctl("wait", "--max-wait-ms", "100", pid)
    assert r.returncode == TIMEOUT and "RUNNING" in r.stdout
    out = ctl.json("kill", "--terminate", "--wait", "--grace", "2000", pid)[0]
    assert out["process"]["status"]["state"] == "PROCESS_STATE_EXITED"
    for child in children:  # the whole tree went, not just the shell
        poll(lambda: gone(child), what=f"child {child} gone")
    assert "EXITED" in ctl.ok("wait", pid)
    r = ctl("logs", "-f", pid)  # a follow of a final process ends at once
    assert r.returncode == OK and r.stderr == "ready\n"
    assert ctl("kill", pid).returncode == CONFLICT  # nothing left to signal

    single = ctl.ok("spawn", "--", "sleep", "300").strip()
    ctl.ok("wait", "--running", single)
    assert "delivered to 1" in ctl.ok("kill", "-s", "TERM", single)
    assert "SIGTERM" in ctl.ok("wait", "--max-wait-ms", "10000", single)


def test_restart_rm_and_watch_processes(ctl):
    pid = ctl.ok("spawn", "-l", "suite=cli-restart", "--", "sleep", "300").strip()
    ctl.ok("wait", "--running", pid)
    # --initial: the first event (this process, RUNNING) also shows the watch is live.
    watcher = ctl.popen("--json", "watch", "-l", "suite=cli-restart", "--initial")
    try:
        initial = json.loads(read_line(watcher.stdout))
        assert initial["type"] == "PROCESS_EVENT_TYPE_INITIAL"
        assert initial["process"]["id"] == pid
        first_pid = initial["process"]["status"]["pid"]
        restarted = ctl.json("restart", pid, "--grace", "2000")[0]["process"]
        assert restarted["id"] == pid
        assert restarted["status"]["state"] == "PROCESS_STATE_RUNNING"
        assert restarted["status"]["pid"] != first_pid
        assert int(restarted["status"]["restart_count"]) == 1
        r = ctl("rm", pid)
        assert r.returncode == CONFLICT and "PROCESS_RUNNING" in r.stderr
        assert "deleted" in ctl.ok("rm", "--force", pid)
        assert ctl("wait", pid).returncode == NOT_FOUND
        assert ctl("rm", pid).returncode == NOT_FOUND
        assert ctl("restart", pid).returncode == NOT_FOUND
        # The watch saw the restart's state changes, then the delete.
        events = []
        while not events or events[-1]["type"] != "PROCESS_EVENT_TYPE_DELETED":
            events.append(json.loads(read_line(watcher.stdout)))
            assert len(events) < 50, events
        assert all(e["process"]["id"] == pid for e in events)
        assert "PROCESS_EVENT_TYPE_STATE_CHANGED" in [e["type"] for e in events]
    finally:
        watcher.kill()
        finish(watcher)
    r = ctl("watch", "--state", "asleep", "--count", "1")
    assert r.returncode == USAGE and "asleep" in r.stderr


def test_attach_passes_stdin_through(ctl):
    r = ctl("attach", "-i", "--", "sh", "-c", "cat; echo err >&2; exit 5", input="a\nb\n")
    assert (r.returncode, r.stdout, r.stderr) == (5, "a\nb\n", "err\n")
    pid = ctl.ok("spawn", "--stdin-pipe", "--", "sh", "-c", "read x; echo got $x").strip()
    r = ctl("attach", "-i", "--id", pid, input="hello\n")
    assert (r.returncode, r.stdout) == (OK, "got hello\n")
    assert ctl("attach").returncode == USAGE


# ---- sessions and locks ----

def test_lock_acquire_runs_a_command_under_the_lock(ctl):
    r = ctl("lock", "acquire", "cli-lock-run", "--", "sh", "-c",
            'test -n "$SPINDLE_FENCING_TOKEN" && test -n "$SPINDLE_LEASE_ID" && exit 7')
    assert r.returncode == 7, r.stderr
    assert ctl.json("lock", "describe", "cli-lock-run")[0]["lock"]["holders"] == 0


def test_lock_held_elsewhere_no_wait_max_wait_describe(ctl):
    holder = ctl.popen("--json", "lock", "acquire", "cli-lock-held")
    try:
        grant = json.loads(read_line(holder.stdout))
        assert grant["acquired"] and grant["grant"]["lease_id"]
        r = ctl("lock", "acquire", "cli-lock-held", "--no-wait", "--", "true")
        assert r.returncode == CONFLICT and "not acquired" in r.stderr
        start = time.monotonic()
        r = ctl("lock", "acquire", "cli-lock-held", "--max-wait-ms", "300", "--", "true")
        assert r.returncode == TIMEOUT and time.monotonic() - start >= 0.3
        described = ctl.json("lock", "describe", "cli-lock-held")[0]
        assert described["lock"]["holders"] == 1
        assert described["holders"][0]["fencing_token"] == grant["grant"]["fencing_token"]
        assert "holders:     1" in ctl.ok("lock", "describe", "cli-lock-held")
        assert "cli-lock-held" in ctl.ok("lock", "list", "--prefix", "cli-lock-")
    finally:
        holder.send_signal(signal.SIGTERM)
        code, _, err = finish(holder)
    assert code == OK, err
    assert ctl.json("lock", "describe", "cli-lock-held")[0]["lock"]["holders"] == 0
    assert ctl("lock", "acquire", "cli-lock-held", "--no-wait", "--", "true").returncode == OK


def test_session_commands_and_release_by_lease(ctl):
    session = ctl.json("session", "create", "--ttl-ms", "5000", "--name", "cli-session",
                       "--label", "suite=cli")[0]
    sid = session["session_id"]
    assert session["client_name"] == "cli-session" and session["labels"] == {"suite": "cli"}
    assert ctl.json("session", "refresh", sid, "--ttl-ms", "6000")[0]["ttl_ms"] == "6000"
    assert sid in ctl.ok("session", "list", "--prefix", "cli-session")
    holder = ctl.popen("--json", "lock", "acquire", "cli-lock-session", "--session", sid)
    try:
        lease = json.loads(read_line(holder.stdout))["grant"]["lease_id"]
        got = ctl.json("session", "get", sid, "--locks")[0]
        assert got["session"]["held_locks"] == 1
        assert [lock["name"] for lock in got["locks"]] == ["cli-lock-session"]
        assert "held locks:  1" in ctl.ok("session", "get", sid)
        release = ("lock", "release", lease, "--request-id", "cli-release-1")
        assert ctl.json(*release)[0]["remaining"] == 0
        assert ctl.json(*release)[0]["remaining"] == 0  # a retry: the first answer again
        assert ctl("lock", "release", lease).returncode == CONFLICT  # already released
    finally:
        holder.send_signal(signal.SIGTERM)
        finish(holder)
    keepalive = ctl.popen("session", "keepalive", sid, "--interval-ms", "200")
    try:
        assert read_line(keepalive.stdout).startswith("refreshed")
    finally:
        keepalive.send_signal(signal.SIGINT)
        code, _, err = finish(keepalive)
    assert code == OK, err
    assert "closed" in ctl.ok("session", "close", sid)
    assert ctl.json("session", "get", sid)[0]["session"]["state"] == "SESSION_STATE_CLOSED"
    assert ctl("session", "refresh", "s-no-such-session").returncode == NOT_FOUND


def test_events_and_barriers(ctl):
    assert ctl("lock", "event", "wait", "cli-event", "--no-wait").returncode == TIMEOUT
    ctl.ok("lock", "event", "set", "cli-event")
    assert ctl.ok("lock", "event", "wait", "cli-event").strip() == "set"
    ctl.ok("lock", "event", "clear", "cli-event")
    assert ctl("lock", "event", "wait", "cli-event", "--max-wait-ms", "50").returncode == TIMEOUT
    other = ctl.popen("lock", "barrier", "wait", "cli-barrier", "--parties", "2",
                      "--max-wait-ms", "15000")
    assert ctl.ok("lock", "barrier", "wait", "cli-barrier", "--parties", "2",
                  "--max-wait-ms", "15000").startswith("tripped")
    assert finish(other)[0] == OK


def test_lock_create_delete_revoke(ctl):
    created = ctl.json("lock", "create", "cli-admin-sem", "--kind", "semaphore", "--permits", "3",
                       "--bounded", "--label", "suite=cli")[0]
    assert created["created"] is True
    assert created["lock"]["config"]["permits"] == 3 and created["lock"]["config"]["bounded"]
    assert ctl.ok("lock", "create", "cli-admin-sem", "--kind", "semaphore", "--permits", "3",
                  "--bounded").startswith("exists semaphore")
    r = ctl("lock", "create", "cli-admin-sem", "--kind", "mutex")
    assert r.returncode == CONFLICT and "LOCK_EXISTS" in r.stderr
    r = ctl("lock", "create", "cli-admin-x", "--kind", "spinlock")
    assert r.returncode == USAGE and "spinlock" in r.stderr
    r = ctl("lock", "create", "cli-admin-bar", "--kind", "barrier")
    assert r.returncode == USAGE and "parties" in r.stderr
    assert "deleted" in ctl.ok("lock", "delete", "cli-admin-sem")
    assert ctl("lock", "delete", "cli-admin-sem").returncode == NOT_FOUND

    holder = ctl.popen("lock", "acquire", "cli-admin-held")
    try:
        assert read_line(holder.stdout).startswith("acquired cli-admin-held")
        r = ctl("lock", "delete", "cli-admin-held")
        assert r.returncode == CONFLICT and "LOCK_IN_USE" in r.stderr
        token = ctl.json("lock", "describe", "cli-admin-held")[0]["holders"][0]["fencing_token"]
        r = ctl("lock", "revoke", "cli-admin-held", "--token", str(int(token) + 1000))
        assert r.returncode == NOT_FOUND and "HOLDER_NOT_FOUND" in r.stderr
        assert ctl.json("lock", "revoke", "cli-admin-held", "--token", token, "--message",
                        "maintenance")[0]["revoked"] == 1
        # The holder learns it lost the lock and exits 6.
        code, _, err = finish(holder)
        assert code == CONFLICT, err
    finally:
        if holder.poll() is None:
            holder.kill()
            finish(holder)
    assert ctl.json("lock", "describe", "cli-admin-held")[0]["lock"]["holders"] == 0
    ctl.ok("lock", "delete", "cli-admin-held")
    assert ctl("lock", "describe", "cli-admin-held").returncode == NOT_FOUND
    assert ctl("lock", "revoke", "cli-admin-held").returncode == NOT_FOUND


def test_lease_refresh_and_condition_wait_notify(ctl):
    sid = ctl.json("session", "create", "--ttl-ms", "20000", "--name", "cli-cond")[0]["session_id"]
    holder = ctl.popen("--json", "lock", "acquire", "cli-cond-lock", "--session", sid,
                       "--ttl-ms", "8000")
    waiter = None
    try:
        first = json.loads(read_line(holder.stdout))["grant"]
        refreshed = ctl.json("lock", "refresh", first["lease_id"], "--ttl-ms", "15000")[0]
        assert refreshed["expire_time"] > first["expire_time"]
        r = ctl("lock", "refresh", first["lease_id"], "--ttl-ms", "-1")
        assert r.returncode == USAGE and "lease_ttl_ms" in r.stderr
        assert ctl("lock", "refresh", "l-no-such", "--ttl-ms", "1000").returncode == NOT_FOUND

        # No notify: the wait runs out, the lock is held again under a new lease (exit 4).
        wait = ("--json", "lock", "condition", "wait", "cli-cond", "--lease", first["lease_id"],
                "--max-wait-ms", "100", "--request-id", "cli-cond-wait-1")
        r = ctl(*wait)
        assert r.returncode == TIMEOUT, r.stderr
        second = json.loads(r.stdout)
        assert second["notified"] is False
        assert second["grant"]["lease_id"] != first["lease_id"]
        assert int(second["grant"]["fencing_token"]) > int(first["fencing_token"])
        # Its retry (as after a lost answer) gets the grant it re-acquired, not a second wait.
        r = ctl(*wait)
        assert r.returncode == TIMEOUT, r.stderr
        assert json.loads(r.stdout)["grant"]["lease_id"] == second["grant"]["lease_id"]
        r = ctl("lock", "condition", "wait", "cli-cond", "--lease", first["lease_id"])
        assert r.returncode == CONFLICT and "LOCK_NOT_HELD" in r.stderr  # that grant is gone

        waiter = ctl.popen("--json", "lock", "condition", "wait", "cli-cond", "--lease",
                           second["grant"]["lease_id"], "--max-wait-ms", "15000")
        poll(lambda: ctl.json("lock", "describe", "cli-cond")[0]["lock"]["waiters"] == 1,
             what="a condition waiter")
        assert ctl.ok("lock", "condition", "notify", "cli-cond").strip() == "woke 1 waiters"
        code, out, err = finish(waiter)
        assert code == OK, err
        third = json.loads(out)
        assert third["notified"] is True
        assert int(third["grant"]["fencing_token"]) > int(second["grant"]["fencing_token"])
        assert ctl.ok("lock", "condition", "notify", "cli-cond", "--all").strip() == \
            "woke 0 waiters"
        ctl.ok("lock", "release", third["grant"]["lease_id"])
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            finish(waiter)
        holder.send_signal(signal.SIGTERM)
        finish(holder)
        ctl("session", "close", sid)


def test_barrier_reset_and_abort(ctl):
    ctl.ok("lock", "create", "cli-bar", "--kind", "barrier", "--parties", "2")
    assert "broke 0 waiters" in ctl.ok("lock", "barrier", "abort", "cli-bar")
    r = ctl("lock", "barrier", "wait", "cli-bar", "--max-wait-ms", "1000")
    assert r.returncode == CONFLICT and "BARRIER_BROKEN" in r.stderr
    assert ctl.json("lock", "barrier", "reset", "cli-bar")[0]["generation"] == "1"
    other = ctl.popen("lock", "barrier", "wait", "cli-bar", "--max-wait-ms", "15000")
    assert ctl.ok("lock", "barrier", "wait", "cli-bar", "--max-wait-ms", "15000") \
        .startswith("tripped generation=1")
    assert finish(other)[0] == OK
    assert ctl("lock", "barrier", "reset", "cli-bar-no-such").returncode == NOT_FOUND


# ---- queues ----

def test_queue_commands(ctl):
    q = "cli-queue"
    ctl.ok("queue", "create", q, "--max-items", "100", "--label", "suite=cli")
    assert len(ctl.ok("queue", "put", q, "a", "b", "c").split()) == 3
    assert len(ctl.ok("queue", "put", q, "-", input="d\ne\n").split()) == 2
    assert ctl.ok("queue", "get", q) == "a\n"
    leased = [line.split("\t") for line in ctl.ok("queue", "get", q, "--lease", "-n", "2").split("\n")
              if line]
    assert [payload for _, payload in leased] == ["b", "c"]
    assert ctl.ok("queue", "ack", q, leased[0][0]) == f"{leased[0][0]}\tok\n"
    extended = ctl.ok("queue", "extend", q, leased[1][0], "--visibility-ms", "60000")
    assert extended.startswith(f"{leased[1][0]}\tuntil 20")
    result = ctl.json("queue", "extend", q, leased[1][0], "--visibility-ms", "60000")[0]
    assert result["results"][0]["lease_expire_time"] >= extended.split("\tuntil ")[1][:19]
    r = ctl("queue", "extend", q, leased[0][0], "--visibility-ms", "1000")  # acknowledged
    assert r.returncode == CONFLICT and "ended before the extend" in r.stdout
    assert ctl("queue", "extend", q, "9-9-9", "--visibility-ms", "1000").returncode == NOT_FOUND
    r = ctl("queue", "extend", q, leased[1][0], "--visibility-ms", "-5")
    assert r.returncode == USAGE and "visibility_timeout_ms" in r.stderr
    ctl.ok("queue", "nack", q, leased[1][0])  # "c" goes back to the head
    assert ctl("queue", "ack", q, "no-such-receipt").returncode == NOT_FOUND
    described = ctl.json("queue", "describe", q)[0]["queue"]
    assert described["depth"] == "3" and described["in_flight"] == "0"
    assert described["config"]["max_items"] == "100"
    assert "depth:            3 items" in ctl.ok("queue", "describe", q)
    assert q in ctl.ok("queue", "list", "--prefix", "cli-")
    assert ctl.ok("queue", "consume", q, "--count", "2") == "c\nd\n"
    assert ctl.ok("queue", "get", q, "--no-wait") == "e\n"
    # Empty: at once, nothing on stdout, exit 4 (so `while spindlectl queue get` loops end).
    r = ctl("queue", "get", q, "--no-wait")
    assert (r.returncode, r.stdout) == (TIMEOUT, "") and "no item" in r.stderr
    assert ctl("queue", "get", q, "--wait", "--max-wait-ms", "50").returncode == TIMEOUT
    assert json.loads(ctl("--json", "queue", "get", q).stdout)["items"] == []
    # Consume waits for items put while it runs, then ends when the queue is closed and drained.
    consumer = ctl.popen("queue", "consume", q, "--lease", "--ack")
    ctl.ok("queue", "put", q, "f", "g")
    assert read_line(consumer.stdout).endswith("\tf\n")
    ctl.ok("queue", "close", q)
    r = ctl("queue", "put", q, "late")
    assert r.returncode == CONFLICT and "closed" in r.stderr
    code, out, err = finish(consumer)
    assert code == OK and out.endswith("\tg\n"), err
    ctl.ok("queue", "purge", q)
    assert "deleted" in ctl.ok("queue", "delete", q)
    r = ctl("queue", "put", "cli-queue-big", "-", input="x\n" * 1001)
    assert r.returncode == USAGE and "payloads" in r.stderr


# ---- values ----

def test_value_commands(ctl):
    v = "cli-value"
    version = int(ctl.json("value", "set", v, "41")[0]["entry"]["version"])
    assert ctl.ok("value", "get", v) == "41\n"
    assert ctl.ok("value", "add", v, "1") == "42\n"
    assert ctl.ok("value", "cas", v, "50", "--expect", "42").startswith("swapped")
    r = ctl("value", "cas", v, "60", "--expect", "42")
    assert r.returncode == CONFLICT and r.stdout.startswith("not swapped (now 50")
    assert ctl.json("value", "get", v)[0]["entry"]["data"] == {"int64_value": "50"}
    ctl.ok("value", "set", "cli-value-array", "1,2,3", "--type", "int64-array")
    assert ctl.ok("value", "get", "cli-value-array", "--index", "-1") == "3\n"
    assert "cli-value-array\t[1, 2, 3]" in ctl.ok("value", "list", "--prefix", "cli-value")
    # Bounded watches: a replay of exactly --count events, and a live one cut by --timeout-ms.
    events = ctl.ok("value", "watch", v, "--from-version", str(version), "--count", "2")
    assert [line.split("\t")[3] for line in events.splitlines()] == ["41", "42"]
    watched = ctl.json("value", "watch", "--prefix", "cli-value", "--from-version", str(version),
                       "--count", "3")
    assert sum(len(m["events"]["events"]) for m in watched) == 3
    assert ctl("--timeout-ms", "300", "value", "watch", v).returncode == TIMEOUT
    ctl.ok("value", "delete", "cli-value-array")
    assert ctl("value", "get", "cli-value-array").returncode == NOT_FOUND


def test_value_pipe(ctl):
    """value pipe: every stdin line on one ValueStream, one answer line each, in input order."""
    script = ("# a comment, then a blank line\n\n"
              "set cli-pipe 10\nadd cli-pipe 5\nget cli-pipe\nadd cli-pipe-text 1\n"
              "set cli-pipe-text hello world\nadd cli-pipe-text 1\ndelete cli-pipe\nget cli-pipe\n")
    r = ctl("value", "pipe", input=script)
    lines = r.stdout.splitlines()
    assert len(lines) == 8, r.stdout + r.stderr
    assert lines[0].startswith("version ") and lines[1:3] == ["15", "15"]
    assert lines[3] == "1" and lines[4].startswith("version ")
    assert lines[5].startswith("error FAILED_PRECONDITION TYPE_MISMATCH: ")
    assert lines[6].startswith("deleted at version ")
    assert lines[7].startswith("error NOT_FOUND VALUE_NOT_FOUND: ")
    assert r.returncode == CONFLICT, "the first failure's exit code"
    assert ctl.ok("value", "get", "cli-pipe-text") == "hello world\n"
    # Many operations: the CLI writes while it reads, the server holds a writer back; all answered.
    r = ctl("value", "pipe", input="add cli-pipe-many 1\n" * 5000)
    assert r.returncode == OK and r.stdout.splitlines() == [str(i) for i in range(1, 5001)]
    answers = ctl.json("value", "pipe", input="get cli-pipe-many\n")
    assert answers[0]["call_id"] == "1" and answers[0]["get_value"]["entry"]["data"] == {
        "int64_value": "5000"}
    # A malformed line: nothing is sent, the line is named.
    r = ctl("value", "pipe", input="add cli-pipe-bad 1\nfrob cli-pipe-bad\n")
    assert r.returncode == USAGE and "line 2" in r.stderr and r.stdout == ""
    assert ctl("value", "get", "cli-pipe-bad").returncode == NOT_FOUND
    r = ctl("value", "pipe", input="add cli-pipe-bad one\n")
    assert r.returncode == USAGE and "not a number" in r.stderr


# ---- pools ----

def test_pool_commands(ctl):
    p = "cli-pool"
    created = ctl.json("pool", "create", p, "--kind", "command", "--size", "2")[0]
    assert created["created"] and created["pool"]["spec"]["kind"] == "POOL_KIND_COMMAND"
    task = ctl.ok("pool", "submit", p, "--", "sh", "-c", "echo submitted").strip()
    assert "stdout: submitted" in ctl.ok("pool", "wait", task)
    assert ctl.json("pool", "task", task)[0]["task"]["state"] == "TASK_STATE_SUCCEEDED"
    waited = ctl("pool", "submit", p, "--wait", "--", "sh", "-c", "exit 4")
    assert waited.returncode == ERROR and "FAILED" in waited.stdout
    # map: one task per stdin line; results on stdout in input order, progress on stderr.
    r = ctl("pool", "map", p, input="sleep 0.3; echo one\necho two\nexit 3\necho four\n")
    assert r.stdout.splitlines() == ["one", "two", "# 2 FAILED: exit code 3", "four"]
    assert r.returncode == ERROR and "4 done, 1 not succeeded" in r.stderr
    r = ctl("pool", "map", p, "--", "echo", input="x\ny\n")  # COMMAND... LINE
    assert (r.returncode, r.stdout) == (OK, "x\ny\n")
    pool = ctl.json("pool", "status", p)[0]["pool"]
    assert pool["state"] == "POOL_STATE_OPEN" and pool["stats"]["tasks_succeeded"] == "6"
    assert p in ctl.ok("pool", "status")
    assert ctl.json("pool", "resize", p, "--size", "3")[0]["pool"]["spec"]["size"] == 3
    r = ctl("pool", "resize", p, "--size", "-1")
    assert r.returncode == USAGE and "size" in r.stderr
    assert ctl("pool", "resize", "cli-pool-no-such", "--size", "1").returncode == NOT_FOUND
    ctl.ok("pool", "resize", p, "--size", "2")
    assert len(ctl.json("pool", "tasks", p, "--state", "failed")[0]["tasks"]) == 2
    assert "exit code 3" in ctl.ok("pool", "tasks", p, "--state", "failed")
    events = ctl.json("pool", "watch", p, "--after", "1", "--count", "3")
    assert [e["event"]["sequence"] for e in events] == ["2", "3", "4"]
    ctl.ok("pool", "close", p)
    assert ctl("pool", "resize", p, "--size", "1").returncode == CONFLICT  # not open
    assert "CLOSED" in ctl.ok("pool", "join", p, "--max-wait-ms", "15000")
    assert "deleted" in ctl.ok("pool", "delete", p)
    assert ctl("pool", "status", p).returncode == NOT_FOUND


def test_pool_join_cancel_terminate(ctl):
    p = "cli-pool-slow"
    ctl.ok("pool", "create", p, "--kind", "thread", "--size", "1")
    r = ctl("pool", "map", p, input="1\n")
    assert r.returncode == USAGE and "--call" in r.stderr
    running = ctl.ok("pool", "submit", p, "--call", "sleep", "--arg", "60000").strip()
    queued = ctl.ok("pool", "submit", p, "--call", "sleep", "--arg", "60000").strip()
    assert "CANCELLED" in ctl.ok("pool", "cancel", queued)
    ctl.ok("pool", "close", p)
    r = ctl("pool", "join", p, "--max-wait-ms", "100")
    assert r.returncode == TIMEOUT and "not finished" in r.stderr
    assert "TERMINATED" in ctl.ok("pool", "terminate", p, "--grace-ms", "0")
    assert ctl.json("pool", "task", running)[0]["task"]["state"] == "TASK_STATE_CANCELLED"
    assert ctl.json("pool", "join", p)[0]["joined"]
    ctl.ok("pool", "delete", p)


def test_pool_submit_to_a_full_queue(ctl):
    p = "cli-pool-full"
    ctl.ok("pool", "create", p, "--kind", "thread", "--size", "1", "--max-queued", "1")
    running = ctl.ok("pool", "submit", p, "--call", "sleep", "--arg", "60000").strip()
    queued = ctl.ok("pool", "submit", p, "--call", "sleep", "--arg", "60000").strip()
    r = ctl("pool", "submit", p, "--no-wait", "--call", "echo")
    assert r.returncode == ERROR and "POOL_QUEUE_FULL" in r.stderr
    r = ctl("pool", "submit", p, "--max-wait-ms", "200", "--call", "echo")
    assert r.returncode == TIMEOUT and "not submitted" in r.stdout
    r = ctl("pool", "submit", p, "--max-wait-ms", "-1", "--call", "echo")
    assert r.returncode == USAGE and "--max-wait-ms" in r.stderr
    # A submit waiting for room shows in the pool's stats, and its retry takes the wait over.
    first = ctl.popen("pool", "submit", p, "--request-id", "full-1", "--call", "echo")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stats = ctl.json("pool", "status", p)[0]["pool"]["stats"]
        if stats.get("submits_waiting") == 1:
            break
        time.sleep(0.02)
    assert "submits waiting for room: 1" in ctl.ok("pool", "status", p)
    retry = ctl.popen("pool", "submit", p, "--request-id", "full-1", "--call", "echo")
    out, err = first.communicate(timeout=20)
    assert first.returncode == CONFLICT and "REQUEST_SUPERSEDED" in err, (out, err)
    assert "CANCELLED" in ctl.ok("pool", "cancel", running)
    out, err = retry.communicate(timeout=20)
    assert retry.returncode == OK, err
    task = out.strip()
    # Submitted once: a further retry returns the same task.
    assert ctl.ok("pool", "submit", p, "--request-id", "full-1", "--call", "echo").strip() == task
    ctl.ok("pool", "cancel", queued)
    ctl.ok("pool", "delete", p, "--force")


# ---- scheduler ----

@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello\n" if self.path == "/hello" else b"nope\n"
            self.send_response(200 if self.path == "/hello" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sleep_and_fetch(ctl, http_server):
    # The server reports what it measured: at least the 50 ms asked for, a little more when loaded.
    slept = ctl.ok("sleep", "50")
    assert slept.startswith("slept ") and slept.endswith(" ms\n"), slept
    assert 50 <= int(slept.split()[1]) < 5000, slept
    assert ctl("--timeout-ms", "100", "sleep", "5000").returncode == TIMEOUT
    r = ctl("fetch", "--body", f"{http_server}/hello", f"{http_server}/missing")
    assert r.returncode == OK, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("0\t200\t6\t") for line in lines) and "hello" in lines
    assert any(line.startswith("1\t404\t") for line in lines)
    assert lines[-1].startswith("completed 2, failed 0")
    messages = ctl.json("fetch", f"{http_server}/hello")
    assert base64.b64decode(messages[0]["result"]["body"]) == b"hello\n"
    assert messages[-1]["summary"]["completed"] == 1
    r = ctl("fetch", f"{http_server}/hello", f"http://127.0.0.1:{closed_port()}/")
    assert r.returncode == ERROR and "CONNECT_FAILED" in r.stdout


def test_triggers(ctl):
    ctl.ok("trigger", "create", "cli-trigger-once", "--delay-ms", "100", "--", "/bin/echo", "hi")
    poll(lambda: ctl.json("trigger", "get", "cli-trigger-once")[0]["trigger"]["state"]
         == "TRIGGER_STATE_COMPLETED", what="the one-shot trigger ran")
    runs = ctl.json("trigger", "runs", "cli-trigger-once")[0]["runs"]
    assert [r["state"] for r in runs] == ["TRIGGER_RUN_STATE_SUCCEEDED"]
    t = "cli-trigger-paused"
    assert "PAUSED" in ctl.ok("trigger", "create", t, "--every-ms", "3600000", "--paused", "--",
                              "/bin/true")
    assert "ACTIVE" in ctl.ok("trigger", "resume", t)
    assert "PAUSED" in ctl.ok("trigger", "pause", t)
    assert t in ctl.ok("trigger", "list", "--prefix", "cli-trigger", "--state", "paused")
    # A bounded watch: fire until it has seen a finished run (it may start after the first fire).
    watch = ctl.popen("--timeout-ms", "15000", "trigger", "watch", t, "--final-only",
                      "--count", "1")
    poll(lambda: ctl.ok("trigger", "fire", t) and watch.poll() is not None, interval=0.2,
         what="the watch saw a run")
    code, out, err = finish(watch)
    assert code == OK and out.startswith(f"{t} #"), err
    ctl.ok("trigger", "delete", t)
    assert ctl("trigger", "get", t).returncode == NOT_FOUND


# ---- errors ----

@pytest.mark.parametrize("args", [
    ["wait", "p-no-such"], ["logs", "p-no-such"], ["lock", "describe", "cli-no-such"],
    ["session", "get", "s-no-such"], ["value", "get", "cli-no-such"],
    ["pool", "status", "cli-no-such"], ["pool", "task", "t-no-such"],
    ["trigger", "get", "cli-no-such"], ["queue", "describe", "cli-no-such"],
    ["queue", "ack", "cli-no-such", "receipt"],
])
def test_unknown_names_exit_3(ctl, args):
    r = ctl(*args)
    assert r.returncode == NOT_FOUND and "NOT_FOUND" in r.stderr, r.stderr


@pytest.mark.parametrize("args,code,field", [
    (["value", "set", "cli-bad", "abc", "--type", "int64"], USAGE, "value"),
    (["value", "add", "cli-bad", "many"], USAGE, "delta"),
    (["pool", "create", "cli-bad", "--kind", "bogus"], USAGE, "--kind"),
    (["sleep", "-5"], USAGE, "duration_ms"),
    (["fetch", "ftp://example.invalid/"], USAGE, "targets[0].url"),
    (["spawn", "--label", "novalue", "--", "true"], USAGE, "--label"),
    (["ps", "--state", "sleepy"], USAGE, "--state"),
    (["queue", "put", "cli-bad", "x", "--header", "nokey"], USAGE, "nokey"),
    (["trigger", "create", "cli-bad", "--every-ms", "10", "--", "true"], USAGE, "interval_ms"),
    (["no-such-command"], USAGE, "subcommand"),
    (["lock", "acquire"], USAGE, "name"),
])
def test_bad_input_names_the_field(ctl, args, code, field):
    r = ctl(*args)
    assert r.returncode == code and field in r.stderr, (r.returncode, r.stderr)


def test_errors_as_json(ctl):
    r = ctl("--json", "lock", "describe", "cli-no-such")
    assert r.returncode == NOT_FOUND and r.stdout == ""
    error = json.loads(r.stderr)
    assert error["code"] == "NOT_FOUND" and error["reason"] and "cli-no-such" in error["message"]


@pytest.mark.parametrize("args", [["health"], ["info"], ["run", "--", "true"],
                                  ["queue", "get", "q"], ["lock", "acquire", "l", "--", "true"]])
def test_server_down_exits_5(args):
    r = Ctl(f"127.0.0.1:{closed_port()}")(*args)
    assert r.returncode == UNAVAILABLE and "UNAVAILABLE" in r.stderr, r.stderr


# ---- tokens: the streaming commands carry them too ----

def test_token_reaches_streaming_commands(tmp_path):
    token = "cli-e2e-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"cli admin {token}\n")
    tokens.chmod(0o600)
    server = Spindled(f"--auth-tokens={tokens}")
    try:
        anonymous = Ctl(server.address)
        assert anonymous("info").returncode == DENIED
        assert anonymous("attach", "--", "true").returncode == DENIED
        authed = Ctl(server.address, {"SPINDLE_TOKEN": token})
        assert authed("attach", "--", "echo", "attached").stdout == "attached\n"
        pid = authed.ok("spawn", "--", "echo", "logged").strip()
        assert authed.ok("logs", "-f", pid) == "logged\n"
        authed.ok("pool", "create", "cli-token-pool", "--kind", "command", "--size", "1")
        assert authed.ok("pool", "map", "cli-token-pool", input="echo mapped\n") == "mapped\n"
        assert len(authed.ok("pool", "watch", "cli-token-pool", "--after", "1",
                             "--count", "1").splitlines()) == 1
    finally:
        server.stop()


# ---- bash completion ----

def complete(*words):
    """COMPREPLY of `spindlectl WORDS<TAB>` with the generated completion loaded in bash."""
    script = ('source <("$SPINDLECTL" completion bash) || exit 9\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
              '_spindlectl; printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", "spindlectl",
                        *words], capture_output=True, text=True, timeout=30,
                       env=_env({"SPINDLECTL": CTL}))
    assert r.returncode == 0, r.stderr
    return sorted(r.stdout.split())


def test_bash_completion():
    assert complete("qu") == ["queue"]
    assert complete("queue", "p") == ["purge", "put"]
    assert complete("--address", "127.0.0.1:1", "lock", "ev") == ["event"]
    assert complete("lock", "event", "") == ["clear", "set", "wait"]
    assert complete("queue", "get", "q", "--no") == ["--no-wait"]
    assert complete("pool", "create", "p", "--ti") == ["--timeout-ms"]
    assert "--json" in complete("info", "--j")  # global options work after a command
    assert "completion" not in complete("")  # hidden
