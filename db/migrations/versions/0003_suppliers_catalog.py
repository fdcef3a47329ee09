"""suppliers and catalog: onboarding profiles, profit-sharing receivers, product details,
Channels listings, window positions and statistics, notifications

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:30:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _now():
    return sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    op.create_table('supplier_profiles',
    sa.Column('supplier_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('licence_no', sa.String(length=18), nullable=False),
    sa.Column('contact_name', sa.String(length=32), nullable=False),
    sa.Column('contact_phone', sa.String(length=16), nullable=False),
    sa.Column('categories', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('documents', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('wechatpay_mchid', sa.String(length=16), nullable=True),
    sa.Column('open', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('resubmissions', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('escalations', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('review_note', sa.Text(), server_default='', nullable=False),
    sa.Column('reviewed_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('suspended_reason', sa.Text(), nullable=True),
    _now(),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['supplier_id'], ['suppliers.id'], ),
    sa.PrimaryKeyConstraint('supplier_id')
    )
    op.create_index('uq_supplier_profiles_open_licence', 'supplier_profiles', ['licence_no'], unique=True,
                    postgresql_where=sa.text('open'))
    op.create_table('profit_sharing_receivers',
    sa.Column('supplier_id', sa.BigInteger(), nullable=False),
    sa.Column('receiver_type', sa.String(length=20), nullable=False),
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('relation_type', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    _now(),
    sa.ForeignKeyConstraint(['supplier_id'], ['suppliers.id'], ),
    sa.PrimaryKeyConstraint('supplier_id')
    )
    op.create_table('product_details',
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('images', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('video_url', sa.String(length=520), nullable=True),
    sa.Column('materials', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('newbie_pick', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('escalations', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('review_note', sa.Text(), server_default='', nullable=False),
    sa.Column('reviewed_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], ),
    sa.PrimaryKeyConstraint('product_id')
    )
    op.create_index('ix_product_details_newbie_pick', 'product_details', ['newbie_pick'], unique=False)
    op.create_table('channels_listings',
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('out_product_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('channels_product_id', sa.String(length=64), nullable=True),
    _now(),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], ),
    sa.PrimaryKeyConstraint('product_id'),
    sa.UniqueConstraint('out_product_id')
    )
    op.create_table('window_product_stats',
    sa.Column('window_id', sa.BigInteger(), nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('exposures', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('clicks', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], ),
    sa.ForeignKeyConstraint(['window_id'], ['windows.id'], ),
    sa.PrimaryKeyConstraint('window_id', 'product_id')
    )
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('recipient_user_id', sa.BigInteger(), nullable=True),
    sa.Column('recipient_role', sa.String(length=20), nullable=True),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('subject_type', sa.String(length=20), nullable=False),
    sa.Column('subject_id', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=160), nullable=True),
    _now(),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['recipient_user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    op.create_index(op.f('ix_notifications_recipient_role'), 'notifications', ['recipient_role'], unique=False)
    op.create_index(op.f('ix_notifications_recipient_user_id'), 'notifications', ['recipient_user_id'], unique=False)
    op.add_column('window_products', sa.Column('position', sa.Integer(), server_default='0', nullable=False))
    op.add_column('window_products', sa.Column('off_reason', sa.String(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column('window_products', 'off_reason')
    op.drop_column('window_products', 'position')
    op.drop_index(op.f('ix_notifications_recipient_user_id'), table_name='notifications')
    op.drop_index(op.f('ix_notifications_recipient_role'), table_name='notifications')
    op.drop_table('notifications')
    op.drop_table('window_product_stats')
    op.drop_table('channels_listings')
    op.drop_index('ix_product_details_newbie_pick', table_name='product_details')
    op.drop_table('product_details')
    op.drop_table('profit_sharing_receivers')
    op.drop_index('uq_supplier_profiles_open_licence', table_name='supplier_profiles')
    op.drop_table('supplier_profiles')
