"""Every knob of Chuchuang, read from the environment (or `.env`) by pydantic-settings.

Periods are `timedelta`s: set them as seconds (`PAYMENT_TIMEOUT=30`) or ISO 8601
(`AUTO_CONFIRM_AFTER=P10D`), so a demo runs a whole order in seconds and tests skip time.
Partner endpoints left empty point at the local sandbox (`chuchuang sandbox`).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain import keys
from domain.channels import ChannelsSyncInput
from domain.channels_inbound import ChannelsPullInput
from domain.commission import CommissionPolicy, PolicyRefused, policy_from_rates
from domain.order_process import OrderTimings
from domain.refunds import RefundRules, RefundTimings
from domain.risk import RiskRules
from domain.withdrawals import WithdrawalRules, WithdrawalTimings

MAX_COMMISSION_TIERS = 3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Path(".data")
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; empty means the embedded server under data_dir"
    )
    database_pool_recycle: timedelta = Field(
        default=timedelta(minutes=30), description="a pooled database connection is replaced after this long"
    )
    temporal_address: str | None = Field(
        default=None, description="host:port of Temporal; empty means `temporal server start-dev`"
    )
    temporal_namespace: str = "default"
    task_queue: str = "chuchuang"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str | None = Field(
        default=None, description="how partners reach our webhooks; default http://api_host:api_port"
    )
    temporal_ui_port: int = 8233
    temporal_port: int = 7233
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(
        default=9464, description="the worker's Prometheus /metrics (reconciliation counters); 0: off"
    )

    # --- `chuchuang dev` supervision (cli/devstack.py) ------------------------------------
    dev_restart_backoff: timedelta = Field(
        default=timedelta(seconds=1), description="wait before restarting a child of `chuchuang dev` that "
                                                  "exited; doubles on each exit in a row before it counts as up")
    dev_restart_backoff_max: timedelta = Field(default=timedelta(seconds=15),
                                               description="the longest wait before a restart")
    dev_up_after: timedelta = Field(
        default=timedelta(seconds=20), description="a child that ran this long counts as up: its next exit "
                                                   "starts the backoff from dev_restart_backoff again")
    dev_start_attempts: int = Field(
        default=5, description="a child that exits this many times in a row without staying up stops the stack")
    dev_stop_grace: timedelta = Field(
        default=timedelta(seconds=5), description="how long a child may take to stop on SIGTERM before it is killed")

    app_env: Literal["development", "production"] = Field(
        default="development", description="production: the worker and the API refuse to start with sandbox "
                                           "credentials, an empty partner setting or a missing secret")

    # --- secrets: one key per purpose (README "Keys and rotation") ---------------------------
    master_key: str | None = Field(
        default=None, description="every purpose key not set on its own is derived from it (HKDF-SHA256, "
                                  "a purpose label each); empty: generated once under data_dir (development only)")
    previous_master_keys: list[str] = Field(
        default_factory=list, description="master keys rotated out: what they derived still verifies "
                                          "(pickup codes, fingerprints, identity hashes) and decrypts (payloads)")
    jwt_secret: str | None = Field(default=None, description="the token key; empty: derived from master_key. "
                                                             "Rotating it logs everyone out (no grace)")
    jwt_ttl: timedelta = timedelta(hours=12)
    login_failures_per_account: str = Field(
        default="5/15 minutes", description="failed logins an account may have in that window before 429 "
                                            "LOGIN_RATE_LIMITED (`limits` notation)")
    login_failures_per_ip: str = Field(default="30/15 minutes",
                                       description="failed logins one IP may have in that window before 429")
    payload_keys: dict[str, str] = Field(
        default_factory=dict, description="Temporal payload encryption keys, key id -> base64 of 32 bytes "
                                          "(JSON); empty: derived from master_key (and previous_master_keys)")
    payload_key_id: str | None = Field(default=None, description="which of payload_keys encrypts new payloads "
                                                                 "(the others only decrypt); empty: the last one")
    codec_cors_origins: list[str] = Field(
        default_factory=list, description="origins of Temporal UI allowed to call /codec; empty: "
                                          "http://localhost:temporal_ui_port and http://127.0.0.1:temporal_ui_port")
    metrics_token: str | None = Field(default=None, description="when set, the API's /metrics needs "
                                                                "`Authorization: Bearer <metrics_token>`")

    # --- partners: WeChat Pay v3 -----------------------------------------------------------
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8800
    sandbox_url: str | None = None
    wechatpay_base_url: str | None = Field(default=None, description="empty: the sandbox")
    wechatpay_mchid: str | None = None
    wechatpay_appid: str | None = None
    wechatpay_apiv3_key: str | None = None
    wechatpay_private_key_path: Path | None = None
    wechatpay_cert_serial_no: str | None = None
    wechatpay_public_key_path: Path | None = None
    wechatpay_public_key_id: str | None = None
    wechatpay_profit_sharing: bool = Field(
        default=True, description="create JSAPI orders with settle_info.profit_sharing so supplier settlement can split them")
    sandbox_notify_retry_scale: float = Field(
        default=1.0, description="multiplies WeChat Pay's notification retry schedule (0.001 → ms)"
    )
    sandbox_settle_delay: float | None = Field(
        default=3.0, ge=0, description="seconds until the sandbox settles refunds and split orders and a transfer "
                                       "bill is confirmed by its user (WeChat's own pace is minutes)")

    # --- partners: official-account OAuth, logistics ---------------------------------------
    wechat_oauth_base_url: str | None = None
    wechat_app_secret: str | None = None
    wechat_mini_appid: str | None = Field(default=None, description="the mini program's appid (login by "
                                          "code2session, phone numbers); empty: the sandbox's mini program")
    wechat_mini_secret: str | None = Field(default=None, description="the mini program's AppSecret; empty: the "
                                           "sandbox's (calls go to WECHAT_OAUTH_BASE_URL, else api.weixin.qq.com)")
    logistics_base_url: str | None = None
    logistics_key: str | None = None
    logistics_customer: str | None = None

    # --- partners: WeChat Channels shop (视频号小店) ----------------------------------------
    channels_base_url: str | None = Field(default=None, description="empty: the sandbox")
    channels_appid: str | None = None
    channels_secret: str | None = None
    channels_push_token: str | None = None
    channels_encoding_aes_key: str | None = None
    channels_sync_batch_size: int = Field(default=20, ge=1, le=500,
                                          description="outbox rows the Channels sync applies per activity")
    channels_sync_lease: timedelta = Field(default=timedelta(minutes=2),
                                           description="a claimed outbox row is retried by another drain after this")
    channels_sync_wakes_per_run: int = Field(default=200, ge=1,
                                             description="channels-sync continues as new after this many wakes")
    channels_reconcile_every: timedelta = Field(
        default=timedelta(minutes=15), description="pull window stats and product status/stock from the Channels "
                                                   "shop (Schedule `channels-reconcile`), sweeping the outbox")
    channels_return_address_id: str | None = Field(
        default=None, description="the shop's return address id (地址管理) a Channels return is sent back to; "
                                  "empty: the sandbox's")
    channels_pull_every: timedelta = Field(
        default=timedelta(minutes=10), description="pull the shop's changed orders and after-sales (Schedule "
                                                   "`channels-pull`): what a lost push did not bring")
    channels_pull_lookback: timedelta = Field(
        default=timedelta(minutes=30), description="each pull starts this long before the last one ended")
    shop_order_linger: timedelta = Field(
        default=timedelta(minutes=5), description="a shop order's workflow ends after this long with no new event")
    group_platform_fill: bool = Field(
        default=False, description="拼团: a group one place short when its time is up forms anyway, the platform "
                                   "taking that place (nobody pays for it, no goods are sent for it); off: it fails "
                                   "and every member is refunded")

    # --- business periods (DESIGN.md defaults) -------------------------------------------
    payment_timeout: timedelta = timedelta(minutes=15)
    prepay_valid_for: timedelta = Field(
        default=timedelta(minutes=110), description="a WeChat Pay prepay_id lives 2 h: GET /orders/{no}/payment "
                                                    "creates a fresh one for an order still unpaid after this")
    order_prepay_wait_seconds: float = Field(
        default=5.0, ge=0, le=60, description="POST /orders waits this long for the WeChat Pay parameters, "
                                              "then answers 202 and the client fetches GET /orders/{no}/payment")
    auto_confirm_after: timedelta = Field(
        default=timedelta(days=10), description="receipt is confirmed automatically this long after the last "
                                                "parcel ships, whatever the carrier's tracking says")
    receipt_extension: timedelta = Field(
        default=timedelta(days=5), description="how far a buyer may push auto-confirm back, once")
    paid_step_give_up_after: timedelta = Field(
        default=timedelta(hours=1), description="a step of a paid order still failing after this long is "
                                                "compensated: the buyer is refunded")
    refund_window: timedelta = timedelta(days=7)
    pickup_code_valid: timedelta = timedelta(days=7)
    shipment_sla: timedelta = timedelta(hours=48)
    tracking_poll_every: timedelta = Field(
        default=timedelta(hours=6), description="poll the carrier when no tracking push came for this long")
    return_window: timedelta = Field(default=timedelta(days=7), description="7-day no-reason returns")
    quality_claim_window: timedelta = timedelta(days=30)
    return_ship_timeout: timedelta = Field(
        default=timedelta(days=7), description="buyer must ship an approved return within this")
    return_receipt_timeout: timedelta = Field(
        default=timedelta(days=10), description="supplier must confirm a return parcel within this, "
                                                 "or it is accepted")
    refund_poll_every: timedelta = Field(
        default=timedelta(minutes=10), description="ask WeChat Pay about a refund still processing")
    refund_review_above_fen: int = Field(default=50_000, description="refunds above this are flagged for "
                                                                     "support (quality claims are reviewed)")
    refund_review_deadline: timedelta = Field(
        default=timedelta(hours=48), description="a refund review not decided by then is approved automatically")
    refund_polls_per_run: int = Field(default=200, ge=1, description="WeChat Pay polls of a refund still "
                                                                     "processing before its workflow continues as new")
    refund_sweep_every: timedelta = Field(
        default=timedelta(minutes=10), description="how often the sweep looks for refunds whose workflow never "
                                                   "started (schedule `refunds-sweep`)")
    refund_stranded_after: timedelta = Field(
        default=timedelta(minutes=10), description="a buyer's refund saved this long ago whose workflow never "
                                                   "started is handed to it")
    frequent_returns: int = Field(default=3, description="refunds in the window that send a buyer's "
                                                         "next refund to support review")
    frequent_returns_window: timedelta = timedelta(days=30)
    pickup_code_key: str | None = Field(default=None, description="key for pickup codes; empty: derived from master_key")
    pickup_code_previous_keys: list[str] = Field(
        default_factory=list, description="pickup code keys rotated out: codes made with them still verify")
    supplier_review_sla: timedelta = timedelta(hours=24)
    supplier_more_info_timeout: timedelta = timedelta(days=7)
    product_review_sla: timedelta = timedelta(hours=24)
    low_stock_threshold: int = 5
    window_event_rate: str = Field(default="120/minute", description="window exposures/clicks one viewer may "
                                                                       "send (limits notation); more: 429")
    window_event_dedup: timedelta = Field(default=timedelta(minutes=30), description="one exposure (or click) "
                                          "of a window item counted per viewer in this period")
    rate_limit_storage: str = Field(default="memory://", description="where rate-limit counts live (limits "
                                    "storage URI); memory:// is per API process")
    assessment_cycle: timedelta = timedelta(days=30)
    assessment_target_orders: int = 3
    revival_window: timedelta = timedelta(days=30)
    revival_target_orders: int = 10
    assessment_reminder_before: timedelta = timedelta(days=3)
    assessment_refresh_every: timedelta = Field(
        default=timedelta(days=1), description="how often a cycle's sales count is refreshed")
    revival_refresh_every: timedelta = timedelta(hours=6)
    promoter_agreement_version: str = "2026-01"
    identity_hash_key: str | None = Field(
        default=None, description="key for hashing ID numbers and real names; empty: derived from master_key")
    identity_hash_previous_keys: list[str] = Field(
        default_factory=list, description="identity hash keys rotated out: hashes made with them still match")
    commission_settlement_day: int = 5
    settlement_timezone: str = "Asia/Shanghai"
    supplier_settlement_delay_days: int = 1
    # --- settlement runs (workflows.settlement, schedules in workflows/schedules.py) ---
    supplier_settlement_cron: str = Field(
        default="0 2 * * *", description="when the daily supplier run starts, in settlement_timezone")
    commission_settlement_hour: int = Field(
        default=3, ge=0, le=23, description="hour of commission_settlement_day the monthly run starts")
    settlement_catchup_window: timedelta = Field(
        default=timedelta(days=7), description="scheduled runs missed while Temporal was down are "
                                               "caught up within this")
    profit_sharing_max_ratio_bps: int = Field(
        default=3000, ge=0, le=10_000, description="WeChat Pay's maximum split ratio for the merchant "
                                                   "(30% unless WeChat granted more)")
    profit_sharing_poll_every: timedelta = Field(
        default=timedelta(minutes=1), description="ask WeChat Pay about a split order still processing")
    commission_review_above_fen: int = Field(
        default=500_000, description="statements releasing more than this wait for support review")
    settlement_batch_size: int = Field(default=500, ge=1, description="promoters (or orders) per batch")
    settlement_batches_per_child: int = Field(
        default=10, ge=1, description="batches each child workflow of a commission run builds")
    settlement_allow_open_periods: bool = Field(
        default=False, description="let operators run a commission month that has not ended (demos, tests)")

    # --- reconciliation with WeChat Pay's daily bills (workflows.reconciliation) ---
    reconciliation_cron: str = Field(
        default="30 10 * * *", description="when the daily run reconciles yesterday's bill, in Beijing "
                                           "time (WeChat Pay publishes it after 10:00)")
    reconciliation_bill_retry_every: timedelta = Field(
        default=timedelta(minutes=30), description="ask again for a bill WeChat Pay is still making")
    reconciliation_bill_wait_at_most: timedelta = Field(
        default=timedelta(days=2), description="give up (and alert) when the bill is not out after this long")

    # --- pre-sale (domain/presale.py) and subscribe messages -------------------------------
    presale_deposit_bps: int = Field(default=1000, ge=1, le=10_000,
                                     description="a pre-sale deposit, when the supplier gives none: share of the price")
    presale_deposit_max_bps: int = Field(default=2000, ge=1, le=10_000,
                                         description="ceiling on a deposit (Civil Code art. 586: 20% of the price)")
    presale_balance_starts_after: timedelta = Field(
        default=timedelta(days=7), description="the balance window opens this long after the pre-sale is set, "
                                               "when the supplier gives no start")
    presale_balance_window: timedelta = Field(
        default=timedelta(days=3), description="how long the balance can be paid, when the supplier gives no end")
    message_template_order_status: str = Field(default="CC-TPL-ORDER-STATUS",
                                               description="subscribe message template for order changes; "
                                                           "empty: not sent")
    message_template_presale_balance: str = "CC-TPL-PRESALE-BALANCE"
    message_template_refund: str = "CC-TPL-REFUND-RESULT"
    message_template_promoter: str = Field(default="CC-TPL-PROMOTER-NOTICE", description="a promoter's notices: "
                                           "commission credited, withdrawal result, automatic payout, assessment "
                                           "reminder and result, revival, window closed; empty: not sent")
    message_template_supplier: str = Field(default="CC-TPL-SUPPLIER-NOTICE", description="a supplier's notices: "
                                           "review results, suspension and reinstatement, stock; empty: not sent")
    message_template_general: str = Field(default="", description="every other notification; empty: not sent")
    message_resend_after: timedelta = Field(
        default=timedelta(minutes=10), description="a message claimed by a drain that crashed is tried again after this")
    messages_drain_every: timedelta = Field(
        default=timedelta(minutes=1), description="how long each run of the outbox's listener lasts; "
                                                  "messages go out as written (schedule `messages-drain`)")

    # --- risk flags (never blocks; flags for support review) --------------------------------
    risk_window: timedelta = Field(default=timedelta(days=30), description="how far back shared devices, "
                                                                           "IPs and addresses are counted")
    risk_accounts_per_device: int = 3
    risk_accounts_per_ip: int = 5
    risk_accounts_per_address: int = 3
    risk_hash_key: str | None = Field(default=None, description="key for device/IP/address fingerprints; "
                                                                "empty: derived from master_key")
    risk_hash_previous_keys: list[str] = Field(
        default_factory=list, description="fingerprint keys rotated out: fingerprints made with them still match")
    # --- storefront: address book and cart (api/routers/addresses.py, cart.py) -----------------
    address_book_size: int = Field(default=20, ge=1, le=100, description="addresses one buyer may keep")
    cart_size: int = Field(default=100, ge=1, le=500, description="different SKUs one buyer's cart may hold")
    trust_forwarded_for: bool = Field(default=False, description="take the buyer's IP from X-Forwarded-For "
                                                                 "(only behind a proxy that sets it)")

    # --- levels, team and regional bonuses (off until an operator configures them) ----------
    level_period: timedelta = Field(default=timedelta(days=90), description="a promoter's level is set by "
                                    "their own completed sales (GMV) over this period")
    fake_trade_findings_to_close: int = Field(default=3, ge=1, description="confirmed fake-trade findings "
                                              "that close a promoter's window")

    # --- money rules ---------------------------------------------------------------------
    commission_tiers: int = Field(
        default=1, description="the ceiling on every kind of upline pay (1..3): commission tiers and the team "
                               "bonus never reach deeper; read on every payment, policy change and settlement run, "
                               "and the depth of the first policy version")
    commission_tier_rates_bps: list[int] = Field(
        default_factory=lambda: [10_000],
        description="share of the SKU commission paid to tier 1..COMMISSION_TIERS, in basis points: one rate "
                    "above 0 per tier (the first policy version)",
    )
    supplier_service_fee_bps_min: int = 100
    supplier_service_fee_bps_max: int = 500
    withdrawal_min_fen: int = 100
    withdrawal_daily_limit_fen: int = 2_000_000
    withdrawal_review_above_fen: int = 500_000
    withdrawal_poll_every: timedelta = Field(
        default=timedelta(minutes=10), description="ask WeChat Pay about a transfer bill with no result yet")
    withdrawal_confirm_timeout: timedelta = Field(
        default=timedelta(hours=24), description="a transfer the user has not confirmed by then is cancelled "
                                                 "and the money goes back to the wallet")
    withdrawal_polls_per_run: int = Field(default=200, ge=1, description="queries of a transfer bill before its "
                                                                         "withdrawal workflow continues as new")
    withdrawal_sweep_every: timedelta = Field(
        default=timedelta(minutes=10), description="how often the sweep looks for withdrawals whose workflow "
                                                   "never started (schedule `withdrawals-sweep`)")
    withdrawal_stranded_after: timedelta = Field(
        default=timedelta(minutes=10), description="a withdrawal still REQUESTED this long after it was made "
                                                   "is handed to its workflow again")

    # --- operations console and dashboards (api/console, activities/rollups.py) -----------------
    temporal_ui_url: str | None = Field(
        default=None, description="Temporal UI the console links workflows to; default http://127.0.0.1:temporal_ui_port")
    dashboard_rollup_every: timedelta = Field(
        default=timedelta(minutes=5), description="how often the dashboards' rollups are recomputed "
                                                  "(schedule `dashboard-rollups`)")
    dashboard_rollup_lookback_days: int = Field(
        default=1, ge=0, le=62, description="each rollup run also recomputes the periods of this many past days")
    repeat_purchase_alert_bps: int = Field(
        default=4000, ge=0, le=10_000, description="the dashboards alert when the repeat-purchase rate is below this")
    console_cookie_secure: bool = Field(
        default=False, description="send the console's session cookie over HTTPS only (set it behind TLS)")

    @field_validator(
        "jwt_ttl", "payment_timeout", "prepay_valid_for", "auto_confirm_after", "refund_window", "pickup_code_valid",
        "shipment_sla", "tracking_poll_every", "return_window", "quality_claim_window",
        "return_ship_timeout", "return_receipt_timeout", "refund_poll_every", "frequent_returns_window",
        "receipt_extension", "paid_step_give_up_after", "refund_review_deadline", "refund_sweep_every",
        "refund_stranded_after",
        "assessment_cycle", "revival_window", "assessment_reminder_before",
        "assessment_refresh_every", "revival_refresh_every", "risk_window", "withdrawal_poll_every",
        "withdrawal_confirm_timeout", "withdrawal_sweep_every", "withdrawal_stranded_after", "settlement_catchup_window", "profit_sharing_poll_every",
        "level_period", "reconciliation_bill_retry_every", "reconciliation_bill_wait_at_most",
        "presale_balance_starts_after", "presale_balance_window", "message_resend_after", "messages_drain_every",
        "dev_restart_backoff", "dev_restart_backoff_max", "dev_up_after", "dev_stop_grace", "dashboard_rollup_every",
        mode="before")
    @classmethod
    def _plain_seconds(cls, v):
        if isinstance(v, str) and v.strip().isdigit():
            return int(v.strip())
        return v

    @field_validator("commission_settlement_day")
    @classmethod
    def _settlement_day_in_every_month(cls, v: int) -> int:
        if not 1 <= v <= 28:
            raise ValueError("commission_settlement_day must be 1..28, a day every month has")
        return v

    @field_validator("commission_tiers")
    @classmethod
    def _tiers_within_ceiling(cls, v: int) -> int:
        if not 1 <= v <= MAX_COMMISSION_TIERS:
            raise ValueError(
                f"commission_tiers must be 1..{MAX_COMMISSION_TIERS}: the platform pays for "
                "selling goods, never for recruiting, and never deeper than 3 tiers"
            )
        return v

    @model_validator(mode="after")
    def _a_rate_for_every_tier(self):
        try:
            self.commission_policy()
        except PolicyRefused as err:
            raise ValueError(f"COMMISSION_TIERS / COMMISSION_TIER_RATES_BPS: {err}") from err
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def resolved_pickup_code_key(self) -> str:
        return self.pickup_code_keys.current

    @property
    def resolved_risk_key(self) -> str:
        return self.risk_hash_keys.current

    def resolved_master_key(self) -> str:
        if self.master_key:
            return self.master_key
        path = self.data_dir / "master_key"
        if not path.exists():  # development: made once, atomically (the worker and the API start together)
            import os
            import secrets
            import tempfile

            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".master_key.")
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)  # fails if another process made it first: theirs is kept
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_text().strip()

    def _ring(self, purpose: str, own: str | None, previous: list[str]) -> keys.KeyRing:
        """The purpose's own key, else the one derived from the master key; the previous ones:
        the purpose's rotated-out keys, then what the previous master keys derived."""
        derived = [keys.derive(m, purpose).hex() for m in self.previous_master_keys]
        current = own or keys.derive(self.resolved_master_key(), purpose).hex()
        return keys.KeyRing(current, (*previous, *derived))

    @property
    def pickup_code_keys(self) -> keys.KeyRing:
        return self._ring(keys.PICKUP_CODES, self.pickup_code_key, self.pickup_code_previous_keys)

    @property
    def risk_hash_keys(self) -> keys.KeyRing:
        return self._ring(keys.RISK_FINGERPRINTS, self.risk_hash_key, self.risk_hash_previous_keys)

    @property
    def identity_hash_keys(self) -> keys.KeyRing:
        return self._ring(keys.IDENTITY_HASHES, self.identity_hash_key, self.identity_hash_previous_keys)

    def payload_key_set(self) -> tuple[str, dict[str, bytes]]:
        """(id of the key that encrypts, every key that decrypts by id) for Temporal payloads."""
        if self.payload_keys:
            known = {kid: base64.b64decode(value) for kid, value in self.payload_keys.items()}
            bad = [kid for kid, key in known.items() if len(key) != 32]
            if bad:
                raise ValueError(f"payload_keys {', '.join(bad)}: an AES-256 key is 32 bytes (base64)")
            current = self.payload_key_id or list(known)[-1]
            if current not in known:
                raise ValueError(f"payload_key_id {current!r} is not one of payload_keys")
        else:
            master = keys.derive(self.resolved_master_key(), keys.PAYLOAD_ENCRYPTION)
            current = keys.key_id(master)
            known = {current: master}
        for old in self.previous_master_keys:
            key = keys.derive(old, keys.PAYLOAD_ENCRYPTION)
            known.setdefault(keys.key_id(key), key)
        return current, known

    @property
    def risk_rules(self) -> RiskRules:
        return RiskRules(window=self.risk_window, accounts_per_device=self.risk_accounts_per_device,
                         accounts_per_ip=self.risk_accounts_per_ip,
                         accounts_per_address=self.risk_accounts_per_address)

    @property
    def refund_rules(self) -> RefundRules:
        return RefundRules(return_window=self.return_window, quality_claim_window=self.quality_claim_window,
                           review_above_fen=self.refund_review_above_fen, frequent_returns=self.frequent_returns,
                           frequent_returns_window=self.frequent_returns_window)

    def commission_policy(self) -> CommissionPolicy:
        """The policy in force until an operator saves a version (PUT /commission-policy)."""
        return policy_from_rates(self.commission_tiers, self.commission_tier_rates_bps[: self.commission_tiers]
                                 if len(self.commission_tier_rates_bps) >= self.commission_tiers
                                 else self.commission_tier_rates_bps, ceiling=self.commission_tiers)

    def channels_sync_input(self, mode: str = "drain") -> ChannelsSyncInput:
        return ChannelsSyncInput(mode=mode, batch_size=self.channels_sync_batch_size,
                                 lease_seconds=int(self.channels_sync_lease.total_seconds()),
                                 wakes_per_run=self.channels_sync_wakes_per_run)

    def order_timings(self) -> OrderTimings:
        return OrderTimings(payment_timeout=self.payment_timeout, auto_confirm_after=self.auto_confirm_after,
                            refund_window=self.refund_window, pickup_code_valid=self.pickup_code_valid,
                            shipment_sla=self.shipment_sla, tracking_poll_every=self.tracking_poll_every,
                            receipt_extension=self.receipt_extension,
                            step_give_up_after=self.paid_step_give_up_after, refunds=self.refund_timings(),
                            prepay_valid_for=self.prepay_valid_for)

    @property
    def withdrawal_rules(self) -> WithdrawalRules:
        return WithdrawalRules(min_fen=self.withdrawal_min_fen, daily_limit_fen=self.withdrawal_daily_limit_fen,
                               review_above_fen=self.withdrawal_review_above_fen)

    def resolved_temporal_ui_url(self) -> str:
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip("/")

    def withdrawal_timings(self) -> WithdrawalTimings:
        return WithdrawalTimings(poll_every=self.withdrawal_poll_every,
                                 confirm_timeout=self.withdrawal_confirm_timeout,
                                 polls_per_run=self.withdrawal_polls_per_run)

    def channels_pull_input(self) -> ChannelsPullInput:
        return ChannelsPullInput(lookback=self.channels_pull_lookback, order_timings=self.order_timings(),
                                 linger=self.shop_order_linger)

    def refund_timings(self) -> RefundTimings:
        return RefundTimings(return_ship_timeout=self.return_ship_timeout,
                             return_receipt_timeout=self.return_receipt_timeout,
                             refund_poll_every=self.refund_poll_every, review_deadline=self.refund_review_deadline,
                             polls_per_run=self.refund_polls_per_run)

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandbox"

    @property
    def resolved_sandbox_url(self) -> str:
        return self.sandbox_url or f"http://{self.sandbox_host}:{self.sandbox_port}"

    @property
    def resolved_channels_return_address_id(self) -> str | None:
        """A real shop's return address must be set; the sandbox takes any id."""
        return self.channels_return_address_id or (None if self.channels_appid else "sandbox-return-address")

    @property
    def resolved_public_base_url(self) -> str:
        return self.public_base_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def resolved_wechatpay_base_url(self) -> str:
        return self.wechatpay_base_url or self.resolved_sandbox_url

    @property
    def resolved_oauth_base_url(self) -> str:
        return self.wechat_oauth_base_url or self.resolved_sandbox_url

    @property
    def resolved_logistics_base_url(self) -> str:
        return self.logistics_base_url or self.resolved_sandbox_url

    def resolved_jwt_secret(self) -> str:
        return self.jwt_secret or keys.derive(self.resolved_master_key(), keys.TOKENS).hex()

    @property
    def resolved_codec_cors_origins(self) -> list[str]:
        return self.codec_cors_origins or [f"http://localhost:{self.temporal_ui_port}",
                                           f"http://127.0.0.1:{self.temporal_ui_port}"]


@lru_cache
def get_settings() -> Settings:
    return Settings()
