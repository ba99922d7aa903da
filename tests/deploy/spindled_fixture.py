"""Starts the real spindled on loopback ports for the deployment checks, and small helpers.

Environment (set by ctest): SPINDLED, SPINDLECTL (binaries), SPINDLE_SOURCE_DIR (the repo).
"""
import os
import re
import subprocess
import tempfile
import threading
import urllib.request

TOKEN_NAME = "prometheus"
TOKEN = "deploy-test-token-0123456789abcdef"


class Spindled:
    """One spindled with a tokens file (so the auth families exist), on ephemeral loopback ports."""

    def __init__(self, *flags):
        self.dir = tempfile.TemporaryDirectory(prefix="spindle-deploy-")
        self.tokens = os.path.join(self.dir.name, "tokens")
        with open(self.tokens, "w") as f:
            f.write(f"{TOKEN_NAME} read-only {TOKEN}\n")
        self.proc = subprocess.Popen(
            [os.environ["SPINDLED"], "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
             f"--auth-tokens={self.tokens}", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.logs = []
        self.address = self.metrics_address = None
        listening = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.logs.append(line)
                m = re.search(r"event=listening address=(\S+) metrics_address=(\S+)", line)
                if m:
                    self.address, self.metrics_address = m.group(1), m.group(2)
                    listening.set()
            listening.set()

        threading.Thread(target=drain, daemon=True).start()
        if not listening.wait(30) or self.address is None:
            self.stop()
            raise RuntimeError("spindled did not listen:\n" + "".join(self.logs))

    def ctl(self, *args):
        """Runs spindlectl against this server with the token; returns the CompletedProcess."""
        return subprocess.run(
            [os.environ["SPINDLECTL"], f"--address={self.address}", f"--token={TOKEN}",
             "--timeout-ms=10000", *args],
            capture_output=True, text=True, timeout=30)

    def metrics(self, user=TOKEN_NAME, password=TOKEN):
        request = urllib.request.Request(f"http://{self.metrics_address}/metrics")
        if user:
            import base64
            request.add_header("Authorization", "Basic " +
                               base64.b64encode(f"{user}:{password}".encode()).decode())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return response.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def source(*parts):
    return os.path.join(os.environ["SPINDLE_SOURCE_DIR"], *parts)


def run_checks(checks):
    """Runs each check (a function); prints one line each and a summary; returns the exit code."""
    passed = failed = 0
    for check in checks:
        try:
            check()
            print(f"ok   {check.__name__}", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            print(f"FAIL {check.__name__}: {e}", flush=True)
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
