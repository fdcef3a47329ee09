from __future__ import annotations

from datetime import UTC, datetime

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
from api.identities import MINI_PROGRAM, OFFICIAL_ACCOUNT, wechat_user
from db.models import User
from db.storefront_models import UserPhone
from domain.privacy import mask_phone, phone_hash
from domain.promoters import hashes_under
from integrations import miniprogram, oauth
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
        who = await oauth.exchange_code_for_user(body.code, settings)
    except PartnerRejected as err:
        limiter.failed(None, ip)
        raise ApiError(401, "WECHAT_CODE_REJECTED", f"WeChat refused the code: {err}") from err
    except PartnerUnavailable as err:
        raise ApiError(503, "WECHAT_UNAVAILABLE", "WeChat OAuth is not answering, try again") from err
    return await run_in_threadpool(_logged_in, request, OFFICIAL_ACCOUNT, who.openid, who.unionid)


def _logged_in(request: Request, app: str, openid: str, unionid: str | None) -> TokenOut:
    """The user of this WeChat identity (api/identities.py: one user per unionid across apps)."""
    with sessions_of(request).begin() as s:
        user = wechat_user(s, app, openid, unionid)
        return TokenOut(access_token=issue_token(request.app.state.settings, s, user.id, user.role),
                        role=user.role, user_id=user.id)


class MiniProgramLogin(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="the code wx.login() gave the mini program")


@router.post("/miniprogram", response_model=TokenOut,
             summary="Buyer/promoter login from the mini program (wx.login code → code2Session)",
             description="The same account as an official-account login when WeChat gives both the same "
                         "unionid. WeChat's session_key is neither returned nor kept.",
             responses={429: {"description": "LOGIN_RATE_LIMITED: too many refused codes from this address"}},
             dependencies=[Depends(public("the login itself: the mini program's wx.login code is the credential"))])
async def miniprogram_login(body: MiniProgramLogin, request: Request) -> TokenOut:
    settings = request.app.state.settings
    limiter, ip = request.app.state.login_limiter, client_ip(request, settings)
    limiter.check(None, ip)
    try:
        who = await miniprogram.code2session(body.code, settings)
    except PartnerRejected as err:
        limiter.failed(None, ip)
        raise ApiError(401, "WECHAT_CODE_REJECTED", f"WeChat refused the code: {err}") from err
    except PartnerUnavailable as err:
        raise ApiError(503, "WECHAT_UNAVAILABLE", "WeChat is not answering, try again") from err
    return await run_in_threadpool(_logged_in, request, MINI_PROGRAM, who.openid, who.unionid)


class PhoneBinding(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="the code of the getPhoneNumber button")


class PhoneOut(BaseModel):
    phone: str = Field(description="masked: 138****8000")
    country_code: str


def _mini_client(request: Request) -> miniprogram.MiniProgramClient:
    client = getattr(request.app.state, "miniprogram", None)
    if client is None:
        client = request.app.state.miniprogram = miniprogram.MiniProgramClient.from_settings(request.app.state.settings)
    return client


@router.put("/phone", response_model=PhoneOut,
            summary="Bind my phone number from the mini program's getPhoneNumber button",
            description="Only the masked number and a keyed hash are kept (never the number); a number already "
                        "bound to another account is 409 PHONE_IN_USE.",
            responses={429: {"description": "LOGIN_RATE_LIMITED: too many refused codes"}})
async def bind_phone(body: PhoneBinding, request: Request,
                     principal: Principal = Depends(require_roles("buyer", "promoter"))) -> PhoneOut:
    settings = request.app.state.settings
    limiter, ip = request.app.state.login_limiter, client_ip(request, settings)
    account = f"phone:{principal.user_id}"
    limiter.check(account, ip)
    try:
        info = await _mini_client(request).phone_number(body.code)
    except PartnerRejected as err:
        limiter.failed(account, ip)
        raise ApiError(422, "PHONE_CODE_REJECTED", f"WeChat refused the phone code: {err.code}") from err
    except PartnerUnavailable as err:
        raise ApiError(503, "WECHAT_UNAVAILABLE", "WeChat is not answering, try again") from err
    number = f"{info.country_code}-{info.pure_phone_number}"
    digest, *earlier = hashes_under(number, settings.identity_hash_keys.all, hasher=phone_hash)
    masked, country = mask_phone(info.pure_phone_number), info.country_code
    del info, number  # the number itself goes no further

    def bind() -> PhoneOut:
        with sessions_of(request).begin() as s:
            owner = s.scalar(select(UserPhone.user_id).where(UserPhone.phone_hash.in_([digest, *earlier])))
            if owner is not None and owner != principal.user_id:
                raise ApiError(409, "PHONE_IN_USE", "this phone number is bound to another account")
            row = s.get(UserPhone, principal.user_id, with_for_update=True)
            if row is None:
                row = UserPhone(user_id=principal.user_id)
                s.add(row)
            row.phone_masked, row.phone_hash, row.country_code = masked, digest, country
            row.bound_at = datetime.now(UTC)
            return PhoneOut(phone=masked, country_code=country)

    return await run_in_threadpool(bind)


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
