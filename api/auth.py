"""Bearer tokens (JWT, HS256) carrying the user's id and role, and password hashing for staff."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.access import Access, declare
from api.errors import ApiError
from settings import Settings

ROLES = ("buyer", "promoter", "supplier", "outlet_staff", "support", "operator")
STAFF_ROLES = ("supplier", "outlet_staff", "support", "operator")
PLATFORM_STAFF = ("support", "operator")  # the platform's own people: review, suspend, settle

bearer = HTTPBearer(auto_error=False, description="JWT from /auth/wechat or /auth/token")


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str


def issue_token(settings: Settings, user_id: int, role: str) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + settings.jwt_ttl}
    return jwt.encode(claims, settings.resolved_jwt_secret(), algorithm="HS256")


def decode_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(token, settings.resolved_jwt_secret(), algorithms=["HS256"],
                            options={"require": ["sub", "role", "exp"]})
    except jwt.PyJWTError as err:
        raise ApiError(401, "INVALID_TOKEN", f"bearer token rejected: {err}") from err
    if claims["role"] not in ROLES:
        raise ApiError(401, "INVALID_TOKEN", "unknown role")
    return Principal(int(claims["sub"]), claims["role"])


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


def current_principal(request: Request,
                      credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    if credentials is None:
        raise ApiError(401, "UNAUTHORIZED", "a bearer token is required")
    return decode_token(request.app.state.settings, credentials.credentials)


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
