"""Bearer tokens (JWT, HS256) carrying the user's id, role and login session, and password
hashing for staff.

A token is only as good as its session: every request looks up the session (`sid`) with its
user in one primary-key query, so logging out, disabling the user or changing their role ends
the token at once, however long its `exp` still runs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

# the role tuples live with the access declarations; routers take them from here with require_roles
from api.access import PLATFORM_STAFF, ROLES, STAFF_ROLES, Access, declare  # noqa: F401
from api.errors import ApiError
from db.models import AuthSession, User
from settings import Settings


bearer = HTTPBearer(auto_error=False, description="JWT from /auth/wechat or /auth/token")


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str
    session_id: str = ""


def issue_token(settings: Settings, s: Session, user_id: int, role: str) -> str:
    """Open a login session for the user (in the caller's transaction) and sign its token.
    The user's sessions that have expired are dropped on the way (nothing else reads them)."""
    now = datetime.now(UTC)
    s.execute(delete(AuthSession).where(AuthSession.user_id == user_id, AuthSession.expires_at < now))
    session = AuthSession(id=secrets.token_hex(16), user_id=user_id, role=role, expires_at=now + settings.jwt_ttl)
    s.add(session)
    s.flush()
    claims = {"sub": str(user_id), "role": role, "sid": session.id, "iat": now, "exp": session.expires_at}
    return jwt.encode(claims, settings.resolved_jwt_secret(), algorithm="HS256")


def decode_token(settings: Settings, token: str) -> Principal:
    """The token's claims, checked against the token key in force (a rotated key refuses every
    token it signed)."""
    try:
        claims = jwt.decode(token, settings.resolved_jwt_secret(), algorithms=["HS256"],
                            options={"require": ["sub", "role", "sid", "exp"]})
    except jwt.PyJWTError as err:
        raise ApiError(401, "INVALID_TOKEN", f"bearer token rejected: {err}") from err
    if claims["role"] not in ROLES:
        raise ApiError(401, "INVALID_TOKEN", "unknown role")
    return Principal(int(claims["sub"]), claims["role"], str(claims["sid"]))


def check_session(s: Session, principal: Principal) -> None:
    """The token's session still stands: not logged out, the user active, the role unchanged."""
    row = s.execute(select(AuthSession.revoked_at, AuthSession.role, User.active, User.role)
                    .join(User, User.id == AuthSession.user_id)
                    .where(AuthSession.id == principal.session_id,
                           AuthSession.user_id == principal.user_id)).first()
    if row is None:
        raise ApiError(401, "SESSION_ENDED", "this token's session is gone; log in again")
    revoked_at, session_role, active, user_role = row
    if not active:
        raise ApiError(401, "USER_DISABLED", "this account is disabled")
    if revoked_at is not None:
        raise ApiError(401, "SESSION_ENDED", "this token was logged out; log in again")
    if user_role != principal.role or session_role != principal.role:
        raise ApiError(401, "ROLE_CHANGED", f"this account's role is now {user_role}; log in again")


def end_sessions(s: Session, user_id: int, session_id: str | None = None) -> int:
    """Revoke one session (logout) or every open session of the user."""
    query = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if session_id is not None:
        query = query.where(AuthSession.id == session_id)
    return s.execute(query.values(revoked_at=datetime.now(UTC))).rowcount


# scrypt from the standard library: no extra dependency, memory-hard, parameters stored inline.
def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate.hex(), digest)


def principal_of_token(request: Request, token: str) -> Principal:
    principal = decode_token(request.app.state.settings, token)
    with request.app.state.sessions() as s:
        check_session(s, principal)
    return principal


def current_principal(request: Request,
                      credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    if credentials is None:
        raise ApiError(401, "UNAUTHORIZED", "a bearer token is required")
    return principal_of_token(request, credentials.credentials)


def require_roles(*roles: str):
    """The route's access declaration (api/access.py): a token of one of these roles."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in roles:
            raise ApiError(403, "FORBIDDEN", f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return declare(dependency, Access(frozenset(roles)))


# any signed-in user; what each role then sees is decided by api/views.py
signed_in = require_roles(*ROLES)


def optional_roles(*roles: str, why: str):
    """Anonymous callers allowed (`why` says what the route checks instead); a token of any
    other role is refused with 403. Gives the Principal or None."""

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal | None:
        if credentials is None:
            return None
        principal = current_principal(request, credentials)
        if principal.role not in roles:
            raise ApiError(403, "FORBIDDEN", f"this needs one of the roles: {', '.join(roles)}, or no token")
        return principal

    return declare(dependency, Access(frozenset(roles), anonymous=True, why=why))
