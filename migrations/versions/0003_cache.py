"""shared layer cache: which layers a job took from where, and the cache repository's tags

Revision ID: 0003_cache
Revises: 0003_select
Create Date: 2026-12-01 11:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0003_cache'
down_revision = '0003_select'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('build_jobs') as batch:
        batch.add_column(sa.Column('cache_layers', sa.JSON(), nullable=True))
    op.create_table('cache_layers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cache_key', sa.String(length=128), nullable=False),
    sa.Column('layer', sa.String(length=64), nullable=False),
    sa.Column('built_host', sa.String(length=255), nullable=False),
    sa.Column('spec_name', sa.String(length=255), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cache_layers')),
    sa.UniqueConstraint('cache_key', name=op.f('uq_cache_layers_cache_key'))
    )
    op.create_index(op.f('ix_cache_layers_last_used_at'), 'cache_layers', ['last_used_at'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_cache_layers_last_used_at'), table_name='cache_layers')
    op.drop_table('cache_layers')
    with op.batch_alter_table('build_jobs') as batch:
        batch.drop_column('cache_layers')
