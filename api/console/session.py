"""The console's session: the API's own bearer token (from POST /auth/token) kept in an
HttpOnly, SameSite=Strict cookie; a CSRF token derived from it (HMAC) that every form post and
htmx request must echo; every action taken through the API itself (an in-process ASGI call with
that token), so the console has exactly the API's role rules, validation and workflow updates;
and the audit trail of staff actions."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import httpx
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal, decode_token
from api.errors import ApiError
from db.console_models import StaffAudit

COOKIE = "cc_console"
LOGIN_COOKIE = "cc_console_login"
CONSOLE_ROLES = ("support", "operator", "supplier")
INTERNAL = "http://console.internal"


class LoginRequired(Exception):
    """No (valid) session: the page answers with a redirect to the login form."""


def token_of(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def principal_of(request: Request) -> Principal:
    token = token_of(request)
    if not token:
        raise LoginRequired()
    try:
        principal = decode_token(request.app.state.settings, token)
    except ApiError as err:
        raise LoginRequired() from err
    if principal.role not in CONSOLE_ROLES:
        raise LoginRequired()
    return principal


def csrf_token(request: Request, token: str | None = None) -> str:
    token = token or token_of(request) or ""
    secret = request.app.state.settings.resolved_jwt_secret().encode()
    return hmac.new(secret, f"console-csrf:{token}".encode(), hashlib.sha256).hexdigest()


async def check_csrf(request: Request) -> None:
    """A post must carry the session's CSRF token (form field `csrf` or header X-CSRF-Token)."""
    sent = request.headers.get("x-csrf-token")
    if not sent:
        form = await request.form()
        sent = form.get("csrf")
    if not sent or not hmac.compare_digest(str(sent), csrf_token(request)):
        raise ApiError(403, "CSRF_REJECTED", "the form is stale or forged: reload the page and try again")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


async def call_api(request: Request, method: str, path: str, *, json=None, params=None,
                   token: str | None = None) -> httpx.Response:
    """The API answering for this user: same handlers, role rules and workflow updates."""
    token = token or token_of(request)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=request.app), base_url=INTERNAL) as client:
        return await client.request(method, path, json=json, params=params, headers=headers)


def answer_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('code', '')}: {body['message']}"
    return ""


async def audit(request: Request, principal: Principal, action: str, subject_type: str, subject_id: str,
                reason: str, response: httpx.Response | None = None, *, ok: bool | None = None,
                detail: dict | None = None) -> None:
    """Record a staff action (who, what, on what, why, and what the API answered)."""
    if ok is None:
        ok = response is not None and response.status_code < 400
    info = dict(detail or {})
    if response is not None:
        info["status"] = response.status_code
        if response.status_code >= 400:
            info["answer"] = answer_text(response)

    def write() -> None:
        with request.app.state.sessions.begin() as s:
            s.add(StaffAudit(actor_user_id=principal.user_id, actor_role=principal.role, action=action,
                             subject_type=subject_type, subject_id=str(subject_id), reason=(reason or "")[:2000],
                             outcome="ok" if ok else "refused", detail=info))

    await run_in_threadpool(write)
