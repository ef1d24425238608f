"""A private victoria-metrics for tests, and tiny HTTP servers that misbehave.

`VictoriaMetrics` runs Debian's `victoria-metrics` on a free port with its own
storage directory; it takes the InfluxDB v2 write API (`/api/v2/write`) and
answers queries (`/api/v1/query`, `/api/v1/export`). Without the binary the
test is skipped with the reason, except in CI (`CI=true`), where it fails.

`StallingStore` accepts connections and reads requests but never answers: a
store that is up and hangs. `AnsweringStore` answers every write with one
status (e.g. 400: the store refuses the points).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.brokers import end_process, free_port

VM_PATHS = ("/usr/bin/victoria-metrics",)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; victoria-metrics is required in CI (.ci/run installs it)")
    pytest.skip(reason)


def vm_binary() -> str:
    found = next((p for p in VM_PATHS if Path(p).exists()), shutil.which("victoria-metrics"))
    if found is None:
        _unavailable("victoria-metrics binary not found")
    return str(found)


class VictoriaMetrics:
    """`with VictoriaMetrics() as vm:`; `stop()` and `start()` again keep the data and port."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = vm_binary()
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="ebshed-vm-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            self.binary,
            f"-storageDataPath={self._dir.name}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",  # test clocks run in 2026, whatever the machine's date
            "-search.latencyOffset=0s",  # fresh points are visible to queries at once
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"victoria-metrics exited: {err[-500:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("victoria-metrics did not come up")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        end_process(proc, 10)
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> VictoriaMetrics:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()

    # ---- reading back ----------------------------------------------------------

    def flush(self) -> None:
        """Make everything written so far visible to queries."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of every series matching `match`: [{"metric", "values", "timestamps"}]."""
        self.flush()
        resp = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=30)
        resp.raise_for_status()
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    def series(self, match: str) -> dict[tuple[tuple[str, str], ...], dict[int, float]]:
        """{sorted labels without __name__: {timestamp ms: value}}."""
        out: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
        for row in self.export(match):
            labels = tuple(sorted((k, v) for k, v in row["metric"].items() if k != "__name__"))
            out.setdefault(labels, {}).update(zip(row["timestamps"], row["values"], strict=True))
        return out

    def query(self, expr: str, at_ms: int, step_s: int = 10) -> list[dict[str, Any]]:
        """An instant PromQL/MetricsQL query at `at_ms`; the result vector."""
        self.flush()
        resp = httpx.get(
            f"{self.url}/api/v1/query",
            params={"query": expr, "time": at_ms / 1000, "step": f"{step_s}s"},
            timeout=30,
        )
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, start_ms: int, end_ms: int, step_s: int) -> list[Any]:
        """A range query, as Grafana runs a panel's query; the result matrix."""
        self.flush()
        params = {"query": expr, "start": start_ms / 1000, "end": end_ms / 1000, "step": step_s}
        resp = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == "success", body
        result: list[Any] = body["data"]["result"]
        return result


class StallingStore:
    """An HTTP server that reads each request and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self.requests = 0
        self.got_request = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="stalling-store", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            conn.settimeout(0.5)
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if data:
                self.requests += 1
                self.got_request.set()

    def __enter__(self) -> StallingStore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._thread.join(5)
        with self._lock:
            for conn in self._conns:
                conn.close()


class AnsweringStore:
    """An HTTP server that answers every write with `status` and counts the requests."""

    def __init__(self, status: int) -> None:
        answer = status
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                store.requests += 1
                body = b'{"code":"invalid","message":"refused by the test"}'
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AnsweringStore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def wait_until(cond: Callable[[], bool], within_s: float = 30.0, what: str = "condition") -> None:
    """Wait (real time) for something another thread or process does; fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within_s} s")
        time.sleep(0.02)
