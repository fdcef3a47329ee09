"""pre-sale orders: deposit and balance payments

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 23:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _now():
    return sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    # a pre-sale order has two payments: deposit {order_no}D and balance {order_no}B
    op.drop_constraint('payments_order_no_key', 'payments', type_='unique')
    op.create_index(op.f('ix_payments_order_no'), 'payments', ['order_no'], unique=False)
    op.add_column('payments', sa.Column('kind', sa.String(10), server_default='full', nullable=False))
    op.add_column('orders', sa.Column('channels_order_id', sa.String(32), nullable=True))
    op.create_unique_constraint('orders_channels_order_id_key', 'orders', ['channels_order_id'])

    # the subscribe-message outbox on the stored notifications
    op.add_column('notifications', sa.Column('delivery_status', sa.String(10), server_default='pending',
                                             nullable=False))
    op.add_column('notifications', sa.Column('delivery_note', sa.String(120), nullable=True))
    op.add_column('notifications', sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_notifications_pending', 'notifications', ['id'],
                    postgresql_where=sa.text("delivery_status = 'pending'"))

    op.create_table('sku_presales',
    sa.Column('sku_id', sa.BigInteger(), sa.ForeignKey('skus.id'), primary_key=True),
    sa.Column('deposit_fen', sa.BigInteger(), nullable=False),
    sa.Column('balance_starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('balance_ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), server_default='true', nullable=False),
    _now(),
    sa.CheckConstraint('deposit_fen > 0', name='ck_sku_presales_deposit'),
    sa.CheckConstraint('balance_ends_at > balance_starts_at', name='ck_sku_presales_window'))

    op.create_table('presale_orders',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('deposit_fen', sa.BigInteger(), nullable=False),
    sa.Column('balance_fen', sa.BigInteger(), nullable=False),
    sa.Column('balance_starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('balance_ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(16), nullable=False),
    sa.Column('deposit_paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('balance_paid_at', sa.DateTime(timezone=True), nullable=True),
    _now(),
    sa.CheckConstraint('deposit_fen > 0 AND balance_fen > 0', name='ck_presale_orders_amounts'))

    op.create_table('refund_payments',
    sa.Column('out_refund_no', sa.String(40), primary_key=True),
    sa.Column('refund_no', sa.String(32), sa.ForeignKey('refunds.refund_no'), nullable=False),
    sa.Column('out_trade_no', sa.String(32), sa.ForeignKey('payments.out_trade_no'), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(12), nullable=False),
    sa.Column('wechat_refund_id', sa.String(64), nullable=True),
    _now(),
    sa.CheckConstraint('amount_fen > 0', name='ck_refund_payments_amount'))
    op.create_index(op.f('ix_refund_payments_refund_no'), 'refund_payments', ['refund_no'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_refund_payments_refund_no'), table_name='refund_payments')
    op.drop_table('refund_payments')
    op.drop_table('presale_orders')
    op.drop_table('sku_presales')
    op.drop_index('ix_notifications_pending', table_name='notifications')
    op.drop_column('notifications', 'sent_at')
    op.drop_column('notifications', 'delivery_note')
    op.drop_column('notifications', 'delivery_status')
    op.drop_constraint('orders_channels_order_id_key', 'orders', type_='unique')
    op.drop_column('orders', 'channels_order_id')
    op.drop_column('payments', 'kind')
    op.drop_index(op.f('ix_payments_order_no'), table_name='payments')
    op.create_unique_constraint('payments_order_no_key', 'payments', ['order_no'])
