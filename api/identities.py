"""One buyer, however they arrive: by the mini program (code2Session) or by the official
account's web OAuth. Each app gives its own openid; WeChat's unionid is the same for one person
in every app of an open-platform account, so an identity seen before is found by (app, openid)
and a person new to this app by unionid. Users from before (official-account logins, their
openid on `users.openid`) are found by that openid.

A user made here gets `users.openid` = the openid they first came with: the identity WeChat
Pay orders are made for (see README "Mini program login")."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.errors import ApiError
from db.models import User
from db.storefront_models import WechatAccount

MINI_PROGRAM = "mini_program"
OFFICIAL_ACCOUNT = "official_account"
BUYING_ROLES = ("buyer", "promoter")


def wechat_user(s: Session, app: str, openid: str, unionid: str | None) -> User:
    """The user behind this app's openid (made on first sight), its identity recorded; 403 when
    the account may not log in here."""
    user = None
    account = s.get(WechatAccount, (app, openid))
    if account is not None:
        user = s.get(User, account.user_id)
    if user is None and app == OFFICIAL_ACCOUNT:
        user = s.scalar(select(User).where(User.openid == openid))
    if user is None and unionid:
        user_id = s.scalar(select(WechatAccount.user_id).where(WechatAccount.unionid == unionid)
                           .order_by(WechatAccount.created_at).limit(1))
        user = s.get(User, user_id) if user_id is not None else None
    if user is None:
        taken = s.scalar(select(User.id).where(User.openid == openid)) is not None
        user = User(role="buyer", openid=None if taken else openid, display_name=f"微信用户{openid[-4:]}")
        s.add(user)
        s.flush()
    if user.role not in BUYING_ROLES or not user.active:
        raise ApiError(403, "FORBIDDEN", "this WeChat account cannot log in here")
    now = datetime.now(UTC)
    s.execute(insert(WechatAccount).values(app=app, openid=openid, user_id=user.id, unionid=unionid,
                                           last_login_at=now)
              .on_conflict_do_update(index_elements=["app", "openid"],
                                     set_={"last_login_at": now,
                                           "unionid": unionid if unionid else WechatAccount.unionid}))
    return user
