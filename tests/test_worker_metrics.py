"""The worker serves its own Prometheus counters (they live in its process, not the API's)."""

from __future__ import annotations

import socket

import httpx

from settings import Settings
from worker import serve_metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_worker_serves_the_reconciliation_counters_and_survives_a_taken_port(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, worker_metrics_port=free_port())
    server = serve_metrics(settings)
    assert server is not None
    try:
        page = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5)
        assert page.status_code == 200
        assert "# TYPE chuchuang_reconciliation_differences_total counter" in page.text
        assert "# TYPE chuchuang_reconciliation_runs_total counter" in page.text
        assert serve_metrics(settings) is None  # the port is taken: logged, the worker goes on
    finally:
        server.shutdown()
        server.server_close()
    assert serve_metrics(Settings(data_dir=tmp_path, worker_metrics_port=0)) is None
