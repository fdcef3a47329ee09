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
    issue_token,
    signed_in,
)
from api.deps import sessions_of
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
    try:
        openid = await oauth.exchange_code(body.code, settings)
    except PartnerRejected as err:
        raise ApiError(401, "WECHAT_CODE_REJECTED", f"WeChat refused the code: {err}") from err
    except PartnerUnavailable as err:
        raise ApiError(503, "WECHAT_UNAVAILABLE", "WeChat OAuth is not answering, try again") from err

    def find_or_create() -> User:
        with sessions_of(request).begin() as s:
            user = s.scalar(select(User).where(User.openid == openid))
            if user is None:
                user = User(role="buyer", openid=openid, display_name=f"微信用户{openid[-4:]}")
                s.add(user)
                s.flush()
            return user

    user = await run_in_threadpool(find_or_create)
    if user.role not in ("buyer", "promoter") or not user.active:
        raise ApiError(403, "FORBIDDEN", "this WeChat account cannot log in here")
    return TokenOut(access_token=issue_token(settings, user.id, user.role), role=user.role, user_id=user.id)


@router.post("/token", response_model=TokenOut, summary="Staff and supplier login with a password",
             dependencies=[Depends(public("the login itself: the password is the credential"))])
def password_login(body: PasswordLogin, request: Request) -> TokenOut:
    with sessions_of(request)() as s:
        user = s.scalar(select(User).where(User.username == body.username))
    if user is None or not user.active or user.role not in STAFF_ROLES \
            or not check_password(body.password, user.password_hash):
        raise ApiError(401, "BAD_CREDENTIALS", "wrong username or password")
    settings = request.app.state.settings
    return TokenOut(access_token=issue_token(settings, user.id, user.role), role=user.role, user_id=user.id)


@router.get("/me", summary="Who the bearer token belongs to")
def me(request: Request, principal: Principal = Depends(signed_in)) -> dict:
    with sessions_of(request)() as s:
        user = s.get(User, principal.user_id)
    if user is None:
        raise ApiError(401, "UNAUTHORIZED", "user no longer exists")
    return {"user_id": user.id, "role": user.role, "display_name": user.display_name}
