from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.access import public
from api.auth import (
    STAFF_ROLES,
    Principal,
    check_password,
    end_sessions,
    issue_token,
    require_roles,
    signed_in,
)
from api.deps import client_ip, sessions_of
from api.errors import ApiError
from db.models import User
from integrations import oauth
from integrations.errors import PartnerRejected, PartnerUnavailable

router = APIRouter(prefix="/auth", tags=["auth"])


class WeChatLogin(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="code from the OAuth redirect")


class PasswordLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    role: str
    user_id: int


@router.post("/wechat", response_model=TokenOut, summary="Buyer/promoter login with a WeChat OAuth code",
             dependencies=[Depends(public("the login itself: WeChat's OAuth code is the credential"))])
async def wechat_login(body: WeChatLogin, request: Request) -> TokenOut:
    settings = request.app.state.settings
    limiter, ip = request.app.state.login_limiter, client_ip(request, settings)
    limiter.check(None, ip)
    try:
        openid = await oauth.exchange_code(body.code, settings)
    except PartnerRejected as err:
        limiter.failed(None, ip)
        raise ApiError(401, "WECHAT_CODE_REJECTED", f"WeChat refused the code: {err}") from err
    except PartnerUnavailable as err:
        raise ApiError(503, "WECHAT_UNAVAILABLE", "WeChat OAuth is not answering, try again") from err

    def find_or_create() -> TokenOut:
        with sessions_of(request).begin() as s:
            user = s.scalar(select(User).where(User.openid == openid))
            if user is None:
                user = User(role="buyer", openid=openid, display_name=f"微信用户{openid[-4:]}")
                s.add(user)
                s.flush()
            if user.role not in ("buyer", "promoter") or not user.active:
                raise ApiError(403, "FORBIDDEN", "this WeChat account cannot log in here")
            return TokenOut(access_token=issue_token(settings, s, user.id, user.role), role=user.role,
                            user_id=user.id)

    return await run_in_threadpool(find_or_create)


@router.post("/token", response_model=TokenOut, summary="Staff and supplier login with a password",
             responses={429: {"description": "LOGIN_RATE_LIMITED: too many failed logins for the account or IP"}},
             dependencies=[Depends(public("the login itself: the password is the credential"))])
def password_login(body: PasswordLogin, request: Request) -> TokenOut:
    settings = request.app.state.settings
    limiter, ip = request.app.state.login_limiter, client_ip(request, settings)
    limiter.check(body.username, ip)
    with sessions_of(request).begin() as s:
        user = s.scalar(select(User).where(User.username == body.username))
        if user is None or not user.active or user.role not in STAFF_ROLES \
                or not check_password(body.password, user.password_hash):
            limiter.failed(body.username, ip)
            raise ApiError(401, "BAD_CREDENTIALS", "wrong username or password")
        return TokenOut(access_token=issue_token(settings, s, user.id, user.role), role=user.role,
                        user_id=user.id)


@router.post("/logout", status_code=204, summary="End this token's session: it is refused from now on")
def logout(request: Request, principal: Principal = Depends(signed_in)) -> None:
    with sessions_of(request).begin() as s:
        end_sessions(s, principal.user_id, principal.session_id)


class UserStatus(BaseModel):
    active: bool = Field(description="false: the account is disabled and every token of it refused at once")


@router.put("/users/{user_id}/status", status_code=204,
            summary="Disable (or enable again) an account; disabling ends every session of it at once")
def set_user_status(user_id: int, body: UserStatus, request: Request,
                    principal: Principal = Depends(require_roles("operator"))) -> None:
    if user_id == principal.user_id and not body.active:
        raise ApiError(409, "CANNOT_DISABLE_SELF", "an operator cannot disable their own account")
    with sessions_of(request).begin() as s:
        user = s.get(User, user_id, with_for_update=True)
        if user is None:
            raise ApiError(404, "NOT_FOUND", f"user {user_id} not found")
        user.active = body.active
        if not body.active:
            end_sessions(s, user_id)


@router.get("/me", summary="Who the bearer token belongs to")
def me(request: Request, principal: Principal = Depends(signed_in)) -> dict:
    with sessions_of(request)() as s:
        user = s.get(User, principal.user_id)
    if user is None:
        raise ApiError(401, "UNAUTHORIZED", "user no longer exists")
    return {"user_id": user.id, "role": user.role, "display_name": user.display_name}
