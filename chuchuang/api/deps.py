"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client


def sessions_of(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


async def temporal_of(request: Request) -> Client:
    return await request.app.state.temporal.client()
