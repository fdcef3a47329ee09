"""Engine and session factory. One engine per process, built from settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from settings import Settings, get_settings


def database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's: used as a guest when it runs (e.g. under
    `make dev`, which owns it), else started for as long as this process runs (db/embedded.py)."""
    if settings.database_url:
        url = settings.database_url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url
    return _embedded(str(Path(settings.data_dir).resolve() / "pg"))


@lru_cache
def _embedded(pgdata: str) -> str:
    import sys

    from db.embedded import embedded_url

    return embedded_url(Path(pgdata), command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]))


@lru_cache
def _engine_for(url: str, recycle_seconds: int) -> Engine:
    # No ping on every checkout (a round trip per transaction): connections are recycled on a
    # schedule instead, and one the server dropped fails once, invalidates the pool, and the
    # activity's retry gets a fresh connection.
    return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=recycle_seconds)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    return _engine_for(database_url(settings), int(settings.database_pool_recycle.total_seconds()))


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(settings), expire_on_commit=False)


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Session]:
    """A session inside one database transaction: commits on success, rolls back on error."""
    with session_factory(settings).begin() as session:
        yield session
