"""`chuchuang dev` pieces: the Temporal dev-server command (started for real), child process
supervision, and the Ctrl-C / SIGTERM path. The full stack is not started here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from cli import devstack
from settings import Settings

SEARCH_ATTRIBUTE_NAMES = {"OrderNo", "PromoterId", "SupplierId", "BusinessStatus"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_stack() -> devstack.Stack:
    return devstack.Stack(console=Console(file=open(os.devnull, "w")))  # noqa: SIM115


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


# --- command lines ------------------------------------------------------------------------


def test_temporal_dev_command(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, temporal_port=17999, temporal_ui_port=18999, temporal_namespace="shop"
    )
    argv = devstack.temporal_dev_command(settings)

    assert Path(argv[0]).name == "temporal" and Path(argv[0]).exists()
    assert argv[1:3] == ["server", "start-dev"]
    assert flag_values(argv, "--db-filename") == [str(tmp_path.resolve() / "temporal.db")]
    assert flag_values(argv, "--ip") == ["127.0.0.1"]
    assert flag_values(argv, "--port") == ["17999"]
    assert flag_values(argv, "--ui-port") == ["18999"]
    assert flag_values(argv, "--namespace") == ["shop"]
    assert flag_values(argv, "--log-level") == ["warn"]
    attributes = dict(a.split("=") for a in flag_values(argv, "--search-attribute"))
    assert set(attributes) == SEARCH_ATTRIBUTE_NAMES
    assert set(attributes.values()) <= {"Keyword", "KeywordList"}


def test_children_get_database_and_temporal_and_inherit_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHUCHUANG_DEVSTACK_PROBE", "inherited")
    env = devstack.child_env(Settings(data_dir=tmp_path), "postgresql+psycopg://x@/db", "127.0.0.1:7233")
    assert env["DATABASE_URL"] == "postgresql+psycopg://x@/db"
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:7233"
    assert env["DATA_DIR"] == str(tmp_path.resolve())
    assert env["CHUCHUANG_DEVSTACK_PROBE"] == "inherited" and env["PATH"] == os.environ["PATH"]
    assert devstack.chuchuang_command("worker") == [sys.executable, "-m", "cli", "worker"]
    wide = devstack.child_env(Settings(data_dir=tmp_path), "x", "y", columns=131)
    assert wide["COLUMNS"] == str(131 - devstack.PREFIX_WIDTH)


def test_banner_names_every_endpoint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_port=8123, sandbox_port=8899)
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(devstack.banner(settings, "postgresql+psycopg://postgres:secret@db/chuchuang", True))
    text = console.export_text()
    for expected in [
        "http://127.0.0.1:8123", "http://127.0.0.1:8123/docs", "http://127.0.0.1:8123/console", "http://127.0.0.1:8233",
        "127.0.0.1:7233", "http://127.0.0.1:8899", "chuchuang seed-demo", "user create --role support",
        str(tmp_path.resolve()),
    ]:  # fmt: skip
        assert expected in text
    assert "secret" not in text


# --- supervision --------------------------------------------------------------------------


def test_watch_reports_a_child_that_dies() -> None:
    stack = quiet_stack()
    stack.start("sleeper", py("import time; time.sleep(30)"))
    stack.start("crasher", py("import sys, time; time.sleep(0.3); sys.exit(3)"))
    try:
        assert stack.watch(interval=0.05) == 3
    finally:
        stack.stop(grace=2)
    assert stack.children == []


def test_watch_treats_a_clean_exit_as_a_failure() -> None:
    stack = quiet_stack()
    stack.start("quitter", py("pass"))
    try:
        assert stack.watch(interval=0.05) == 1
    finally:
        stack.stop(grace=2)


def test_stop_kills_what_ignores_sigterm_and_stops_temporal_last(tmp_path: Path) -> None:
    log = tmp_path / "order"
    on_term = f"""
        import signal, sys, time
        def bye(*_):
            with open({str(log)!r}, "a") as f: f.write(sys.argv[1] + "\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(30)
    """
    stack = quiet_stack()
    stack.temporal = stack.spawn("temporal", [*py(on_term), "temporal"])
    stack.start("worker", [*py(on_term), "worker"])
    stubborn = stack.start("api", py("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"))
    time.sleep(1.0)  # let the handlers be installed

    started = time.monotonic()
    stack.stop(grace=1.0)
    assert time.monotonic() - started < 5
    assert stubborn.process.returncode == -signal.SIGKILL
    assert log.read_text().split() == ["worker", "temporal"]
    assert stack.children == [] and stack.temporal is None


SUPERVISED = """
    import sys, time
    from cli import devstack
    def bring_up(stack):
        child = stack.start("child", [sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.process.pid, flush=True)
        return stack.watch()
    sys.exit(devstack.supervise(devstack.Stack(), bring_up))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_children_and_exits_zero(sig: signal.Signals) -> None:
    proc = subprocess.Popen(py(SUPERVISED), stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(proc.stdout.readline())
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


# --- the real Temporal dev server -------------------------------------------------------


async def test_temporal_dev_server_starts_with_our_search_attributes(tmp_path: Path) -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from integrations.temporal import SEARCH_ATTRIBUTES

    settings = Settings(data_dir=tmp_path, temporal_port=free_port(), temporal_ui_port=free_port())
    stack = quiet_stack()
    try:
        server = devstack.start_temporal(stack, settings)
        client = await devstack.wait_for_temporal(
            settings.resolved_temporal_address, settings.temporal_namespace, timeout=30, server=server
        )
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        registered = {k: v for k, v in listed.custom_attributes.items() if k in SEARCH_ATTRIBUTE_NAMES}
        assert registered == dict(SEARCH_ATTRIBUTES)
        assert registered["OrderNo"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        await devstack.prepare_temporal(settings, server)  # idempotent on an existing namespace

        with pytest.raises(devstack.DevStackError, match="already in use"):
            devstack.start_temporal(quiet_stack(), settings)
    finally:
        stack.stop(grace=5)
    assert (tmp_path / "temporal.db").exists()
    assert not devstack.port_open("127.0.0.1", settings.temporal_port)
