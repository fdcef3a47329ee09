"""Order side effects on our database. Each activity is idempotent: a retry after a crash
finds its own earlier work (by order_no, event key or ledger key) and does nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import bonuses, commission_policy, coupons, flash_sales, freight, group_buy, ledger, risk
from activities.catalog import notify, restock, stock_changed
from activities.errors import business_error
from activities.order_events import record_event
from db.models import (
    LedgerAccount,
    LedgerEntry,
    Order,
    OrderLine,
    Payment,
    Product,
    Shipment,
    Sku,
    Supplier,
    User,
    Window,
)
from db.order_models import Outlet
from db.promoter_models import OrderCommissionPolicy
from db.referrals import referral_chain
from domain import ledger as rules
from domain.commission import (
    CommissionPolicy,
    PolicyVersion,
    SkuCommission,
    line_commission_pool,
    split_by_tier,
    within_ceiling,
)
from domain.money import apply_bps
from domain.order_status import OrderStatus
from domain.orders import (
    PaymentNotice,
    PlacedLine,
    PlacedOrder,
    PlaceOrderInput,
    ShipmentInput,
    TrackingUpdate,
)
from domain.refunds import remaining_share
from domain.risk import RiskRules
from domain.sales import SELF_PURCHASE_DEPTH, is_self_purchase


class OrderActivities:
    def __init__(self, sessions: sessionmaker[Session], policy: CommissionPolicy,
                 risk_rules: RiskRules | None = None, level_period: timedelta | None = None,
                 tier_ceiling: Callable[[], int] | None = None):
        self.sessions = sessions
        self.policy = policy  # version 1, until an operator saves one
        # COMMISSION_TIERS, read at every payment: no version pays deeper than the ceiling now
        self.tier_ceiling = tier_ceiling or (lambda: policy.tiers)
        self.risk_rules = risk_rules or RiskRules()
        self.level_period = level_period  # own sales over this period set the seller's level

    # --- placement -----------------------------------------------------------------------
    @activity.defn
    def place_order(self, inp: PlaceOrderInput) -> PlacedOrder:
        with self.sessions.begin() as s:
            existing = s.get(Order, inp.order_no)
            if existing is not None:
                return self._placed(s, existing)
            promoter_id = self._attributed_promoter(s, inp)
            lines: list[OrderLine] = []
            fees_bps: list[int] = []
            rules_: list[SkuCommission] = []
            reservations: list[tuple[int, int]] = []
            for req in inp.lines:
                sku, product, supplier = self._sellable(s, req.sku_id, sold_in_shop=inp.shop_paid_fen is not None)
                if inp.flash_sale_id is not None:
                    unit_price = self._flash_claimed(s, inp, req.sku_id, req.quantity)
                elif inp.group_id is not None:
                    unit_price = self._group_seated(s, inp, req.sku_id)
                    reservations.append((sku.id, req.quantity))
                elif inp.shop_paid_fen is not None:
                    unit_price = sku.price_fen
                    self._sold_in_shop(s, sku.id, req.quantity)
                else:
                    unit_price = sku.price_fen
                    reservations.append((sku.id, req.quantity))
                lines.append(OrderLine(order_no=inp.order_no, sku_id=sku.id, product_id=product.id,
                                       supplier_id=supplier.id, title=f"{product.title} {sku.spec}".strip(),
                                       unit_price_fen=unit_price, quantity=req.quantity,
                                       list_fen=unit_price * req.quantity))
                fees_bps.append(supplier.service_fee_bps)
                rules_.append(SkuCommission(sku.commission_bps, sku.commission_fixed_fen))
            if inp.fulfilment == "pickup":
                self._check_outlet(s, inp.outlet_id, {ln.supplier_id for ln in lines})
            discounts, platform_funded = (coupons.redeem(s, inp.coupon_code, inp.buyer_user_id,
                                                         [(ln.supplier_id, ln.list_fen) for ln in lines])
                                          if inp.coupon_code else ([0] * len(lines), False))
            if inp.shop_paid_fen is not None:  # the shop's price and discounts decide what was paid
                for line, paid in zip(lines, inp.shop_paid_fen, strict=True):
                    line.list_fen = max(line.list_fen, paid)
                discounts = [line.list_fen - paid for line, paid in zip(lines, inp.shop_paid_fen, strict=True)]
            for line, discount, bps, rule in zip(lines, discounts, fees_bps, rules_, strict=True):
                # Fee and commission are on what is really paid, after the discount; commission
                # can never eat into the platform's fee.
                line.paid_fen = line.list_fen - discount
                line.subsidy_fen = discount if platform_funded else 0  # the platform's cost, not the supplier's
                line.service_fee_fen = apply_bps(line.paid_fen, bps)
                line.commission_fen = min(line_commission_pool(line.paid_fen, line.quantity, rule),
                                          line.paid_fen - line.service_fee_fen)
            # freight (domain/freight.py) is paid with the goods but is no line's: never commissionable
            freight_fen = freight.charge(s, lines, inp.region_code) if inp.fulfilment == "delivery" else 0
            order = Order(order_no=inp.order_no, buyer_user_id=inp.buyer_user_id,
                          window_id=inp.window_id, promoter_id=promoter_id, source=inp.source,
                          status=OrderStatus.PENDING_PAYMENT,
                          total_fen=sum(ln.paid_fen for ln in lines) + freight_fen,
                          discount_fen=sum(discounts), fulfilment=inp.fulfilment, outlet_id=inp.outlet_id,
                          shipping_address=inp.address.model_dump() if inp.address else None,
                          channels_order_id=inp.channels_order_id)
            s.add(order)
            s.flush()
            s.add_all(lines)
            freight.record(s, order.order_no, lines, inp.region_code, freight_fen)
            from activities.presale import (
                on_placed,  # pre-sale SKUs: deposit now, balance later
            )

            if on_placed(s, order, lines) is not None and (freight_fen or inp.group_id is not None):
                raise business_error("PRESALE_ORDERED_ALONE", "pre-sale goods are ordered on their own, without "
                                                              "freight and outside group buys")
            if inp.coupon_code:
                coupons.record_redemption(s, inp.coupon_code, order.order_no, inp.buyer_user_id, sum(discounts))
            record_event(s, order.order_no, OrderStatus.PENDING_PAYMENT, "order placed, stock reserved",
                         f"order:{order.order_no}:placed")
            risk.check_order(s, order_no=order.order_no, buyer_user_id=inp.buyer_user_id, device_fp=inp.device_fp,
                             ip_fp=inp.ip_fp, address_fp=inp.address_fp, rules=self.risk_rules,
                             earlier_fps=inp.earlier_fps)
            # Stock last: a hot SKU's row stays locked from its decrement to the commit, so the
            # decrement comes after everything else (py-spy and pg_stat_activity showed buyers
            # of one SKU queueing on it), in SKU order so two orders never wait on each other.
            for sku_id, quantity in sorted(reservations):
                self._reserve(s, sku_id, quantity)
            s.flush()
            return self._placed(s, order)

    @staticmethod
    def _reserve(s: Session, sku_id: int, quantity: int) -> None:
        # The conditional decrement is the reservation: it never takes stock below zero,
        # however many buyers race for the last units.
        reserved = s.execute(update(Sku).where(Sku.id == sku_id, Sku.stock >= quantity)
                             .values(stock=Sku.stock - quantity).returning(Sku.stock)).scalar()
        if reserved is None:
            raise business_error("OUT_OF_STOCK", f"SKU {sku_id} has fewer than {quantity} left")
        stock_changed(s, sku_id, reserved + quantity, reserved)  # low stock, sold out

    @staticmethod
    def _sold_in_shop(s: Session, sku_id: int, quantity: int) -> None:
        """The Channels shop sold these units from its own count: ours follows, down to zero."""
        left = s.execute(update(Sku).where(Sku.id == sku_id).values(stock=func.greatest(Sku.stock - quantity, 0))
                         .returning(Sku.stock)).scalar()
        stock_changed(s, sku_id, left + quantity, left)

    @staticmethod
    def _flash_claimed(s: Session, inp: PlaceOrderInput, sku_id: int, quantity: int) -> int:
        """A flash-sale line: its units were set aside and claimed already; the sale's price."""
        found = flash_sales.claim_of(s, inp.order_no)
        if (found is None or found[0].status != "held" or found[1].id != inp.flash_sale_id
                or found[1].sku_id != sku_id or found[0].quantity != quantity):
            raise business_error("FLASH_CLAIM_MISSING", f"order {inp.order_no} holds no such flash-sale claim")
        return found[1].price_fen

    @staticmethod
    def _group_seated(s: Session, inp: PlaceOrderInput, sku_id: int) -> int:
        """A group-buy line: its place in the group was taken already; the deal's price."""
        found = group_buy.seat_of(s, inp.order_no)
        if (found is None or found[0].status != "held" or found[1].id != inp.group_id
                or found[2].sku_id != sku_id or len(inp.lines) != 1):
            raise business_error("GROUP_PLACE_MISSING", f"order {inp.order_no} holds no such place in a group")
        return found[2].group_price_fen

    def _attributed_promoter(self, s: Session, inp: PlaceOrderInput) -> int | None:
        if inp.window_id is None:
            return None
        window = s.get(Window, inp.window_id)
        if window is None:
            raise business_error("WINDOW_NOT_FOUND", f"window {inp.window_id} does not exist")
        if bonuses.window_closed(s, window.id):
            raise business_error("WINDOW_CLOSED", f"window {inp.window_id} was closed")
        return window.promoter_id

    def _check_outlet(self, s: Session, outlet_id: int | None, suppliers: set[int]) -> None:
        outlet = s.get(Outlet, outlet_id) if outlet_id else None
        if outlet is None or not outlet.active:
            raise business_error("OUTLET_NOT_FOUND", f"outlet {outlet_id} is not open for pickup")
        if suppliers != {outlet.supplier_id}:
            raise business_error("OUTLET_MISMATCH", "pickup orders hold goods of the outlet's own supplier only")

    def _sellable(self, s: Session, sku_id: int, sold_in_shop: bool = False) -> tuple[Sku, Product, Supplier]:
        row = s.execute(
            select(Sku, Product, Supplier).join(Product, Sku.product_id == Product.id)
            .join(Supplier, Product.supplier_id == Supplier.id).where(Sku.id == sku_id)
        ).first()
        if row is None:
            raise business_error("SKU_NOT_FOUND", f"SKU {sku_id} does not exist")
        sku, product, supplier = row
        if not sold_in_shop and (product.status != "listed" or supplier.status != "active"):
            raise business_error("NOT_ON_SALE", f"SKU {sku_id} is not on sale")
        return sku, product, supplier

    def _placed(self, s: Session, order: Order) -> PlacedOrder:
        lines = s.scalars(select(OrderLine).where(OrderLine.order_no == order.order_no)
                          .order_by(OrderLine.id)).all()
        openid = s.scalar(select(User.openid).where(User.id == order.buyer_user_id)) or ""
        from activities.presale import presale_info

        return PlacedOrder(
            order_no=order.order_no, total_fen=order.total_fen,
            description=(lines[0].title if len(lines) == 1 else f"{lines[0].title} 等{len(lines)}件")[:120],
            buyer_openid=openid, promoter_id=order.promoter_id,
            supplier_ids=sorted({ln.supplier_id for ln in lines}),
            lines=[PlacedLine(line_id=ln.id, sku_id=ln.sku_id, supplier_id=ln.supplier_id,
                              paid_fen=ln.paid_fen, commission_pool_fen=ln.commission_fen,
                              service_fee_fen=ln.service_fee_fen) for ln in lines],
            presale=presale_info(s, order.order_no),
        )

    @activity.defn
    def cancel_unpaid(self, order_no: str, reason: str) -> None:
        """Cancel an order that was never paid and give its stock back, once."""
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            if order is None or order.status == OrderStatus.CANCELLED:
                return
            if order.status != OrderStatus.PENDING_PAYMENT:
                raise business_error("ALREADY_PAID", f"order {order_no} is {order.status}")
            if not flash_sales.release(s, order_no):  # a flash sale's units go back to the sale
                for line in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no)):
                    restock(s, line.sku_id, line.quantity)
            coupons.release(s, order_no)
            group_buy.release(s, order_no)
            order.status = OrderStatus.CANCELLED
            s.execute(update(Payment).where(Payment.order_no == order_no).values(status="CLOSED"))
            from db.presale_models import (
                PresaleOrder,  # a pre-sale order whose deposit never came
            )

            s.execute(update(PresaleOrder).where(PresaleOrder.order_no == order_no).values(status="CANCELLED"))
            record_event(s, order_no, OrderStatus.CANCELLED, reason, f"order:{order_no}:cancelled")

    # --- payment -------------------------------------------------------------------------
    @activity.defn
    def record_payment(self, notice: PaymentNotice) -> None:
        """Write the payment and the pending commission, once, in one database transaction."""
        with self.sessions.begin() as s:
            order = s.get(Order, notice.out_trade_no, with_for_update=True)
            if order is None:
                raise business_error("ORDER_NOT_FOUND", notice.out_trade_no)
            if notice.amount_fen != order.total_fen:
                raise business_error(
                    "AMOUNT_MISMATCH", f"paid {notice.amount_fen} for an order of {order.total_fen}")
            if order.status != OrderStatus.PENDING_PAYMENT:
                return
            now = datetime.now(UTC)
            order.status, order.paid_at, order.transaction_id = OrderStatus.PAID, now, notice.transaction_id
            no = order.order_no
            if notice.paid_in == "channels":  # no WeChat Pay order of ours: the shop's payment is the record
                s.execute(insert(Payment).values(
                    out_trade_no=no, order_no=no, kind="channels", amount_fen=notice.amount_fen, status="SUCCESS",
                    transaction_id=notice.transaction_id, paid_at=now).on_conflict_do_nothing())
                where, clearing = f"the Channels shop {notice.transaction_id}", rules.CHANNELS_CLEARING
            else:
                s.execute(update(Payment).where(Payment.order_no == order.order_no).values(
                    status="SUCCESS", transaction_id=notice.transaction_id, paid_at=now))
                where, clearing = f"WeChat Pay {notice.transaction_id}", rules.CLEARING
            record_event(s, no, OrderStatus.PAID, f"paid, {where}", f"order:{no}:paid")
            # the ledger last: its shared accounts stay locked until the commit
            # a group-buy order earns nothing until its group forms (book_group_commission)
            self.book_payment(s, order, f"order:{no}:payment", order.total_fen, where, clearing=clearing,
                              with_commission=not group_buy.is_group_order(s, no))

    @activity.defn
    def book_group_commission(self, order_no: str) -> None:
        """The order's group formed: book the commission its payment left out, once."""
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            if s.get(OrderCommissionPolicy, order_no) is not None:
                return
            commission, regional = self._commission_of(s, order)
            ledger.lock_accounts(s, {rules.ORDERS_HELD} | _accounts(commission + regional))
            self._post_commission(s, order_no, commission, regional)
            record_event(s, order_no, order.status, "group formed: commission pending until completion",
                         f"order:{order_no}:group_formed")

    def book_payment(self, s: Session, order: Order, payment_key: str, amount_fen: int, memo: str,
                     clearing: str = rules.CLEARING, with_commission: bool = True) -> None:
        """Book a paid order: the money in (under `payment_key`), and the commission of the policy
        in force now (recorded with the order), the seller's level uplift and the regional
        agents' bonus, pending until the order completes."""
        commission, regional = self._commission_of(s, order) if with_commission else ([], [])
        ledger.lock_accounts(s, {clearing, rules.ORDERS_HELD} | _accounts(commission + regional))
        ledger.post(s, payment_key, "payment", rules.transfer(clearing, rules.ORDERS_HELD, amount_fen),
                    order_no=order.order_no, memo=memo)
        self._post_commission(s, order.order_no, commission, regional)

    def _commission_of(self, s: Session, order: Order) -> tuple[list, list]:
        """The commission postings of the policy in force now, recorded with the order (once)."""
        no = order.order_no
        stored = commission_policy.current_policy(s, self.policy)
        version = PolicyVersion(stored.version, within_ceiling(stored.policy, self.tier_ceiling()))
        buyer_tier = self._buyer_tier(s, order)
        self_purchase = buyer_tier is not None
        s.add(OrderCommissionPolicy(order_no=no, policy_version=version.version, self_purchase=self_purchase))
        # a purchase made inside the seller's chain is no sale (domain/sales.py): nobody earns on it,
        # at any tier; the whole commission stays with the platform at completion
        earns = not self_purchase
        commission = list(self._commission_postings(s, order, version)) if earns else []
        if self_purchase:
            who = "the seller" if buyer_tier == 1 else f"the seller's tier-{buyer_tier} upline"
            record_event(s, no, order.status, f"self-purchase: the buyer is {who}; no commission or bonus "
                         "is paid on it, its share stays with the platform", f"order:{no}:self_purchase")
        # the seller's level uplift (tier 1) and regional agents' bonus; off by default
        return bonuses.extras_at_payment(s, order, commission, earns=earns, level_period=self.level_period)

    @staticmethod
    def _post_commission(s: Session, no: str, commission: list, regional: list) -> None:
        for tier, promoter_id, postings in commission:
            ledger.post(s, f"order:{no}:commission:tier{tier}", "commission_pending", postings,
                        order_no=no, memo=f"tier {tier} commission for promoter {promoter_id}")
        for _, agent_id, postings in regional:
            ledger.post(s, f"order:{no}:regional:{agent_id}", "commission_pending", postings,
                        order_no=no, memo=f"regional bonus for agent {agent_id}")

    def _buyer_tier(self, s: Session, order: Order) -> int | None:
        """The tier (1 = the seller) at which the buyer is in the seller's referral chain, or None."""
        if order.promoter_id is None:
            return None
        chain = [p.user_id for p in referral_chain(s, order.promoter_id, SELF_PURCHASE_DEPTH)]
        if not is_self_purchase(order.buyer_user_id, chain):
            return None
        return chain.index(order.buyer_user_id) + 1

    def _commission_chain(self, s: Session, promoter_id: int | None, policy: CommissionPolicy,
                          buyer_user_id: int | None = None) -> list[int | None]:
        """The seller first, then who referred them, as deep as the policy pays. Only active
        promoters earn, and never the buyer; a missing, paused or buying tier's share stays with
        the platform."""
        return [p.id if p.status == "active" and p.user_id != buyer_user_id else None
                for p in referral_chain(s, promoter_id, policy.tiers)]

    def _commission_postings(self, s: Session, order: Order, version: PolicyVersion):
        policy = version.policy
        chain = self._commission_chain(s, order.promoter_id, policy, order.buyer_user_id)
        lines = s.scalars(select(OrderLine).where(OrderLine.order_no == order.order_no)).all()
        per_tier: dict[int, list[rules.Posting]] = {}
        for line in lines:
            for index, share in enumerate(split_by_tier(line.commission_fen, policy, len(chain))):
                tier, promoter_id = index + 1, chain[index]
                if promoter_id is None:
                    continue
                per_tier.setdefault(tier, []).extend(rules.transfer(
                    rules.ORDERS_HELD, rules.promoter_pending(promoter_id), share,
                    order_line_id=line.id, tier=tier, rule=self._rule_name(line, version)))
        for tier, postings in sorted(per_tier.items()):
            if postings:
                yield tier, chain[tier - 1], postings

    def _rule_name(self, line: OrderLine, version: PolicyVersion) -> str:
        return f"sku:{line.sku_id}:policy:v{version.version}:{version.policy.tiers}t"

    # --- fulfilment ----------------------------------------------------------------------
    @activity.defn
    def record_shipment(self, order_no: str, shipment: ShipmentInput) -> None:
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            s.execute(insert(Shipment).values(
                order_no=order_no, supplier_id=shipment.supplier_id, carrier=shipment.carrier,
                waybill_no=shipment.waybill_no).on_conflict_do_nothing())
            if order.status == OrderStatus.PAID:
                order.status = OrderStatus.SHIPPED
            record_event(s, order_no, OrderStatus.SHIPPED,
                         f"supplier {shipment.supplier_id} shipped {shipment.carrier} {shipment.waybill_no}",
                         f"order:{order_no}:shipped:{shipment.supplier_id}")

    @activity.defn
    def record_tracking(self, order_no: str, update_: TrackingUpdate) -> None:
        with self.sessions.begin() as s:
            shipment = s.scalar(select(Shipment).where(
                Shipment.carrier == update_.carrier, Shipment.waybill_no == update_.waybill_no))
            if shipment is None:
                return
            shipment.tracking_state = update_.state
            if update_.delivered and shipment.delivered_at is None:
                shipment.delivered_at = datetime.now(UTC)
            all_delivered = all(
                sh.delivered_at is not None
                for sh in s.scalars(select(Shipment).where(Shipment.order_no == order_no)))
            order = s.get(Order, order_no, with_for_update=True)
            if all_delivered and order.status == OrderStatus.SHIPPED:
                order.status = OrderStatus.DELIVERED
                record_event(s, order_no, OrderStatus.DELIVERED, "delivered (carrier signed)",
                             f"order:{order_no}:delivered")

    @activity.defn
    def mark_received(self, order_no: str, how: str) -> None:
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            if order.status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
                order.status = OrderStatus.RECEIVED
            record_event(s, order_no, OrderStatus.RECEIVED, how, f"order:{order_no}:received")

    @activity.defn
    def complete_order(self, order_no: str) -> bool:
        """The refund window has closed: commission becomes available, the rest is the
        supplier's (less the service fee) and the platform's — for the units not refunded.
        False (and nothing done) while a refund is open on the order."""
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            if order.status == OrderStatus.COMPLETED:
                return True
            if order.status == OrderStatus.REFUNDED or order.open_refunds:
                return False
            pending = _net_on_order(s, order_no, "promoter:%:pending")
            held = sum(_net_on_order(s, order_no, rules.ORDERS_HELD).values())
            lines = s.scalars(select(OrderLine).where(OrderLine.order_no == order_no)).all()
            # the freight no refund gave back is the supplier's, whole (never commissionable); read
            # before the ledger's shared accounts are locked
            freight_postings = freight.settlement_postings(s, order_no)
            ledger.lock_accounts(
                s, {rules.ORDERS_HELD, rules.PLATFORM_REVENUE}
                | {rules.supplier_payable(line.supplier_id) for line in lines}
                | {code(pid) for _, pid in pending for code in (rules.promoter_pending, rules.promoter_available)})
            # pending → available, unless a risk flag on the order freezes it until support decides
            if not bonuses.release_commission(s, order_no, pending):
                record_event(s, order_no, order.status, "commission frozen: a risk flag awaits support review",
                             f"order:{order_no}:commission:frozen")
            postings: list[rules.Posting] = []
            for line in lines:
                # refunds (all closed by now) took their units' parts with cumulative rounding;
                # what is left of each part belongs to the units that were kept
                claimed = line.refund_claimed_quantity
                share = (remaining_share(line.paid_fen, line.quantity, claimed)
                         - remaining_share(line.service_fee_fen, line.quantity, claimed)
                         - remaining_share(line.commission_fen, line.quantity, claimed))
                subsidy = remaining_share(line.subsidy_fen, line.quantity, claimed)
                held -= share
                postings += [rules.Posting(rules.ORDERS_HELD, share, order_line_id=line.id, rule="supplier_share"),
                             rules.Posting(rules.supplier_payable(line.supplier_id), -share,
                                           order_line_id=line.id, rule="supplier_share")]
                # a platform coupon's discount on the units kept: the platform pays it to the supplier
                postings += [rules.Posting(rules.PLATFORM_REVENUE, subsidy, order_line_id=line.id, rule="platform_coupon"),
                             rules.Posting(rules.supplier_payable(line.supplier_id), -subsidy,
                                           order_line_id=line.id, rule="platform_coupon")]
            held -= sum(p.amount_fen for p in freight_postings if p.amount_fen > 0)
            postings += freight_postings
            # what stays: the service fee and any commission no tier could take
            postings += [rules.Posting(rules.ORDERS_HELD, held, rule="service_fee_and_unpaid_commission"),
                         rules.Posting(rules.PLATFORM_REVENUE, -held, rule="service_fee_and_unpaid_commission")]
            postings = [p for p in postings if p.amount_fen != 0]
            if postings:
                ledger.post(s, f"order:{order_no}:settle", "order_settlement", postings,
                            order_no=order_no, memo="order completed")
            order.status, order.completed_at = OrderStatus.COMPLETED, datetime.now(UTC)
            record_event(s, order_no, OrderStatus.COMPLETED, "refund window closed, commission available",
                         f"order:{order_no}:completed")
            return True


def _accounts(booked: list) -> set[str]:
    return {p.account for _, _, postings in booked for p in postings}


def _net_on_order(s: Session, order_no: str, account_pattern: str) -> dict[tuple[int, int | None], int]:
    """(tier or 0, owner id) → what the order's entries left on the matching credit-normal
    accounts (payment, commission, reversals)."""
    rows = s.execute(
        select(LedgerAccount.code, LedgerEntry.tier, func.sum(LedgerEntry.amount_fen))
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerEntry.order_no == order_no, LedgerAccount.code.like(account_pattern))
        .group_by(LedgerAccount.code, LedgerEntry.tier)).all()
    totals: dict[tuple[int, int | None], int] = {}
    for code, tier, amount in rows:
        key = (tier or 0, rules.owner_of(code)[1])
        totals[key] = totals.get(key, 0) - int(amount)  # credits are negative
    return {k: v for k, v in totals.items() if v}


class FulfilmentAlerts:
    """Notices that do not move money: a supplier late to ship."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    @activity.defn
    def shipment_overdue(self, order_no: str, supplier_ids: list[int]) -> None:
        with self.sessions.begin() as s:
            for supplier_id in supplier_ids:
                owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == supplier_id))
                notify(s, user_id=owner, kind="shipment_overdue", subject_type="order", subject_id=order_no,
                       message=f"订单 {order_no} 已超过发货时限，请尽快发货",
                       key=f"order:{order_no}:overdue:{supplier_id}")
                notify(s, role="support", kind="shipment_overdue", subject_type="order", subject_id=order_no,
                       message=f"订单 {order_no}：供应商 {supplier_id} 超时未发货",
                       key=f"order:{order_no}:overdue:{supplier_id}:support")
                record_event(s, order_no, OrderStatus.PAID, f"supplier {supplier_id} is late to ship",
                             f"order:{order_no}:overdue:{supplier_id}")
