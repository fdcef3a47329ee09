"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.errors import ApiError, update_refused


def sessions_of(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


async def temporal_of(request: Request) -> Client:
    return await request.app.state.temporal.client()


async def run_update(request, workflow_id: str, update, *args):
    """Send a workflow update; refusals become 4xx: the validator's reason (409/422), or
    409 PROCESS_ENDED when the workflow has already finished."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    handle = (await temporal_of(request)).get_workflow_handle(workflow_id)
    try:
        return await handle.execute_update(update, args=list(args))
    except WorkflowUpdateFailedError as err:
        raise update_refused(err) from err
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise ApiError(409, "PROCESS_ENDED", f"{workflow_id} has finished; nothing can change it now") from err
        raise


def client_ip(request: Request, settings) -> str | None:
    """The buyer's address: the first X-Forwarded-For hop when we sit behind a proxy we trust
    (TRUST_FORWARDED_FOR), else the peer of the connection."""
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else None
