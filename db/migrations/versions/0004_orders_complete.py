"""orders complete: coupons, discounts per line, pickup outlets and codes, refunds

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _now():
    return sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    op.add_column('orders', sa.Column('discount_fen', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('orders', sa.Column('open_refunds', sa.Integer(), server_default='0', nullable=False))
    op.create_check_constraint('ck_orders_open_refunds', 'orders', 'open_refunds >= 0')
    op.add_column('orders', sa.Column('fulfilment', sa.String(10), server_default='delivery', nullable=False))
    op.add_column('orders', sa.Column('outlet_id', sa.BigInteger(), nullable=True))
    op.alter_column('orders', 'shipping_address', nullable=True)
    op.create_check_constraint('ck_orders_fulfilment', 'orders',
                               "fulfilment IN ('delivery','pickup') AND (fulfilment = 'pickup') = (outlet_id IS NOT NULL)")
    op.create_index('ix_orders_created_at', 'orders', ['created_at'])
    op.add_column('order_lines', sa.Column('list_fen', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('order_lines', sa.Column('refund_claimed_quantity', sa.Integer(), server_default='0', nullable=False))
    op.create_check_constraint('ck_order_lines_refund_claimed', 'order_lines',
                               'refund_claimed_quantity BETWEEN 0 AND quantity')

    op.create_table('coupons',
    sa.Column('code', sa.String(32), primary_key=True),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False, index=True),
    sa.Column('kind', sa.String(12), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('threshold_fen', sa.BigInteger(), nullable=False, server_default='0'),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('total_limit', sa.Integer(), nullable=False),
    sa.Column('used_count', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('active', sa.Boolean(), nullable=False, server_default=sa.text('true')),
    _now(),
    sa.CheckConstraint("kind IN ('fixed','threshold')", name='ck_coupons_kind'),
    sa.CheckConstraint('amount_fen > 0', name='ck_coupons_amount'),
    sa.CheckConstraint('threshold_fen >= 0', name='ck_coupons_threshold'),
    sa.CheckConstraint('used_count BETWEEN 0 AND total_limit', name='ck_coupons_used'),
    )
    op.create_table('coupon_redemptions',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('code', sa.String(32), sa.ForeignKey('coupons.code'), nullable=False, index=True),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('discount_fen', sa.BigInteger(), nullable=False),
    _now(),
    sa.UniqueConstraint('code', 'buyer_user_id', name='uq_coupon_once_per_buyer'),
    )
    op.create_table('outlets',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False, index=True),
    sa.Column('name', sa.String(64), nullable=False),
    sa.Column('address', sa.String(200), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False, server_default=sa.text('true')),
    _now(),
    sa.CheckConstraint('latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180',
                       name='ck_outlets_position'),
    )
    op.create_foreign_key('fk_orders_outlet', 'orders', 'outlets', ['outlet_id'], ['id'])
    op.create_table('outlet_staff',
    sa.Column('user_id', sa.BigInteger(), sa.ForeignKey('users.id'), primary_key=True),
    sa.Column('outlet_id', sa.BigInteger(), sa.ForeignKey('outlets.id'), nullable=False, index=True),
    sa.Column('active', sa.Boolean(), nullable=False, server_default=sa.text('true')),
    )
    op.create_table('pickup_codes',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('outlet_id', sa.BigInteger(), sa.ForeignKey('outlets.id'), nullable=False, index=True),
    sa.Column('code_hash', sa.String(64), nullable=False, unique=True),
    sa.Column('code_tail', sa.String(4), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('status', sa.String(12), nullable=False, server_default='issued'),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('picked_up_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verified_by_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=True),
    _now(),
    sa.CheckConstraint("status IN ('issued','picked_up','expired','refunded')", name='ck_pickup_status'),
    )
    op.create_table('refunds',
    sa.Column('refund_no', sa.String(32), primary_key=True),
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), nullable=False, index=True),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False, index=True),
    sa.Column('kind', sa.String(24), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False, server_default=''),
    sa.Column('status', sa.String(20), nullable=False, index=True),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('needs_return', sa.Boolean(), nullable=False, server_default=sa.text('false')),
    sa.Column('review_reasons', sa.Text(), nullable=False, server_default=''),
    sa.Column('review_note', sa.Text(), nullable=False, server_default=''),
    sa.Column('return_carrier', sa.String(32), nullable=True),
    sa.Column('return_waybill_no', sa.String(64), nullable=True),
    sa.Column('wechat_refund_id', sa.String(64), nullable=True),
    _now(),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_fen > 0', name='ck_refunds_amount'),
    )
    op.create_table('refund_lines',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('refund_no', sa.String(32), sa.ForeignKey('refunds.refund_no'), nullable=False, index=True),
    sa.Column('order_line_id', sa.BigInteger(), sa.ForeignKey('order_lines.id'), nullable=False, index=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('claimed_before', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.UniqueConstraint('refund_no', 'order_line_id', name='uq_refund_lines'),
    sa.CheckConstraint('quantity > 0', name='ck_refund_lines_quantity'),
    )


def downgrade() -> None:
    for table in ('refund_lines', 'refunds', 'pickup_codes', 'outlet_staff'):
        op.drop_table(table)
    op.drop_constraint('fk_orders_outlet', 'orders')
    for table in ('outlets', 'coupon_redemptions', 'coupons'):
        op.drop_table(table)
    op.drop_constraint('ck_order_lines_refund_claimed', 'order_lines')
    op.drop_column('order_lines', 'refund_claimed_quantity')
    op.drop_column('order_lines', 'list_fen')
    op.drop_index('ix_orders_created_at', 'orders')
    op.drop_constraint('ck_orders_fulfilment', 'orders')
    op.alter_column('orders', 'shipping_address', nullable=False)
    op.drop_constraint('ck_orders_open_refunds', 'orders')
    for col in ('outlet_id', 'fulfilment', 'open_refunds', 'discount_fen'):
        op.drop_column('orders', col)
