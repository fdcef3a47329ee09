"""promoter levels, team and regional bonuses, fake-trade findings and frozen commission

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def _now(name='created_at'):
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


OLD_ARITHMETIC = "closing_fen = opening_fen + released_fen - reversed_fen - withdrawn_fen + other_fen"
NEW_ARITHMETIC = ("closing_fen = opening_fen + released_fen + team_bonus_fen + regional_bonus_fen"
                  " - reversed_fen - withdrawn_fen + other_fen")


def upgrade() -> None:
    op.create_table('bonus_policies',
    sa.Column('version', sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column('levels', postgresql.JSONB(), nullable=False),
    sa.Column('team_bonus_depth', sa.Integer(), nullable=False),
    sa.Column('regional_bps', postgresql.JSONB(), nullable=False),
    sa.Column('set_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    _now(),
    sa.CheckConstraint('team_bonus_depth BETWEEN 2 AND 3', name='ck_bonus_policies_depth'))

    op.create_table('order_levels',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('bonus_version', sa.Integer(), sa.ForeignKey('bonus_policies.version'), nullable=False),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), nullable=True, index=True),
    sa.Column('level_rank', sa.Integer(), nullable=True),
    sa.Column('level_name', sa.String(20), nullable=True),
    sa.Column('uplift_bps', sa.Integer(), nullable=False),
    sa.Column('own_gmv_fen', sa.BigInteger(), nullable=False),
    sa.Column('uplift_fen', sa.BigInteger(), nullable=False),
    sa.Column('regional_fen', sa.BigInteger(), nullable=False),
    _now('recorded_at'))

    op.create_table('regional_agents',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('level', sa.String(10), nullable=False),
    sa.Column('region_key', sa.String(200), nullable=False),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), nullable=False, index=True),
    sa.Column('active', sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column('appointed_by_user_id', sa.BigInteger(), nullable=True),
    _now('appointed_at'),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("level IN ('province','city','county')", name='ck_regional_agents_level'))
    op.create_index('uq_regional_agents_active_region', 'regional_agents', ['region_key'], unique=True,
                    postgresql_where=sa.text('active'))

    op.create_table('team_bonuses',
    sa.Column('month', sa.String(7), primary_key=True),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), primary_key=True),
    sa.Column('bonus_version', sa.Integer(), sa.ForeignKey('bonus_policies.version'), nullable=False),
    sa.Column('level_name', sa.String(20), nullable=False),
    sa.Column('team_bonus_bps', sa.Integer(), nullable=False),
    sa.Column('own_gmv_fen', sa.BigInteger(), nullable=False),
    sa.Column('downline_gmv_fen', sa.BigInteger(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    _now())

    op.create_table('fake_trade_findings',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), nullable=False, index=True),
    sa.Column('status', sa.String(12), nullable=False, server_default='open'),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('order_nos', postgresql.JSONB(), nullable=False, server_default='[]'),
    sa.Column('recorded_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('reviewed_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('review_note', sa.Text(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    _now(),
    sa.CheckConstraint("status IN ('open','confirmed','dismissed')", name='ck_fake_trade_status'))

    op.create_table('window_closures',
    sa.Column('window_id', sa.BigInteger(), sa.ForeignKey('windows.id'), primary_key=True),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), nullable=False, index=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('confirmed_findings', sa.Integer(), nullable=False),
    _now('closed_at'))

    # statements: sales commission, team bonus and regional bonus each on their own line
    op.add_column('commission_statements',
                  sa.Column('team_bonus_fen', sa.BigInteger(), nullable=False, server_default='0'))
    op.add_column('commission_statements',
                  sa.Column('regional_bonus_fen', sa.BigInteger(), nullable=False, server_default='0'))
    op.drop_constraint('ck_commission_statements_arithmetic', 'commission_statements', type_='check')
    op.create_check_constraint('ck_commission_statements_arithmetic', 'commission_statements', NEW_ARITHMETIC)


def downgrade() -> None:
    op.drop_constraint('ck_commission_statements_arithmetic', 'commission_statements', type_='check')
    op.drop_column('commission_statements', 'regional_bonus_fen')
    op.drop_column('commission_statements', 'team_bonus_fen')
    op.create_check_constraint('ck_commission_statements_arithmetic', 'commission_statements', OLD_ARITHMETIC)
    op.drop_table('window_closures')
    op.drop_table('fake_trade_findings')
    op.drop_table('team_bonuses')
    op.drop_index('uq_regional_agents_active_region', table_name='regional_agents')
    op.drop_table('regional_agents')
    op.drop_table('order_levels')
    op.drop_table('bonus_policies')
