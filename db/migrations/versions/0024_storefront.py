"""storefront: WeChat identities by unionid, bound phones, address book, cart, freight templates

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 20:45:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def _created(name: str = 'created_at') -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    op.create_table('wechat_accounts',
    sa.Column('app', sa.String(20), primary_key=True),
    sa.Column('openid', sa.String(64), primary_key=True),
    sa.Column('user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('unionid', sa.String(64), nullable=True),
    _created(),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("app IN ('mini_program','official_account')", name='ck_wechat_accounts_app'))
    op.create_index('ix_wechat_accounts_user_id', 'wechat_accounts', ['user_id'])
    op.create_index('ix_wechat_accounts_unionid', 'wechat_accounts', ['unionid'])
    op.create_table('user_phones',
    sa.Column('user_id', sa.BigInteger(), sa.ForeignKey('users.id'), primary_key=True),
    sa.Column('phone_masked', sa.String(24), nullable=False),
    sa.Column('phone_hash', sa.String(64), nullable=False, unique=True),
    sa.Column('country_code', sa.String(8), nullable=False),
    _created('bound_at'))
    op.create_table('addresses',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('receiver', sa.String(32), nullable=False),
    sa.Column('phone', sa.String(16), nullable=False),
    sa.Column('province', sa.String(16), nullable=False),
    sa.Column('city', sa.String(16), nullable=False),
    sa.Column('district', sa.String(16), nullable=False),
    sa.Column('detail', sa.String(120), nullable=False),
    sa.Column('region_code', sa.String(6), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    _created(), _created('updated_at'))
    op.create_index('ix_addresses_user_id', 'addresses', ['user_id'])
    op.create_index('uq_addresses_one_default', 'addresses', ['user_id'], unique=True,
                    postgresql_where=sa.text('is_default'))
    op.create_table('cart_items',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('sku_id', sa.BigInteger(), sa.ForeignKey('skus.id'), nullable=False),
    sa.Column('window_id', sa.BigInteger(), sa.ForeignKey('windows.id'), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    _created('added_at'),
    sa.UniqueConstraint('user_id', 'sku_id', name='uq_cart_items_sku'),
    sa.CheckConstraint('quantity > 0', name='ck_cart_items_quantity'))
    op.create_index('ix_cart_items_user_id', 'cart_items', ['user_id'])
    op.create_table('freight_templates',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False),
    sa.Column('name', sa.String(64), nullable=False),
    sa.Column('kind', sa.String(8), nullable=False),
    sa.Column('rules', JSONB(), nullable=False),
    _created(), _created('updated_at'),
    sa.CheckConstraint("kind IN ('piece','weight')", name='ck_freight_templates_kind'))
    op.create_index('ix_freight_templates_supplier_id', 'freight_templates', ['supplier_id'])
    op.create_table('sku_shipping',
    sa.Column('sku_id', sa.BigInteger(), sa.ForeignKey('skus.id'), primary_key=True),
    sa.Column('template_id', sa.BigInteger(), sa.ForeignKey('freight_templates.id'), nullable=True),
    sa.Column('weight_g', sa.Integer(), nullable=False),
    sa.CheckConstraint('weight_g >= 0', name='ck_sku_shipping_weight'))
    op.create_index('ix_sku_shipping_template_id', 'sku_shipping', ['template_id'])
    op.create_table('order_freight',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False),
    sa.Column('region_code', sa.String(6), nullable=False),
    sa.Column('freight_fen', sa.BigInteger(), nullable=False),
    sa.Column('refund_no', sa.String(32), nullable=True),
    _created(),
    sa.CheckConstraint('freight_fen > 0', name='ck_order_freight_positive'))
    op.create_index('ix_order_freight_supplier_id', 'order_freight', ['supplier_id'])


def downgrade() -> None:
    for table in ('order_freight', 'sku_shipping', 'freight_templates', 'cart_items', 'addresses', 'user_phones',
                  'wechat_accounts'):
        op.drop_table(table)
