"""audit trail, token names, expiry and revocation, disabled users

Revision ID: 0003_audit
Revises: 0002
Create Date: 2026-12-01 10:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0003_audit'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('name', sa.String(length=80), server_default='', nullable=False))
        batch.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('revoked_at', sa.DateTime(), nullable=True))
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('spec', sa.String(length=128), nullable=True),
    sa.Column('target', sa.String(length=255), nullable=True),
    sa.Column('changes', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    op.create_index('ix_audit_events_spec_id', 'audit_events', ['spec', 'id'], unique=False)
    op.create_index('ix_audit_events_actor_id', 'audit_events', ['actor', 'id'], unique=False)
    op.create_index(op.f('ix_audit_events_created_at'), 'audit_events', ['created_at'], unique=False)
    op.create_index(op.f('ix_audit_events_action'), 'audit_events', ['action'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_audit_events_action'), table_name='audit_events')
    op.drop_index(op.f('ix_audit_events_created_at'), table_name='audit_events')
    op.drop_index('ix_audit_events_actor_id', table_name='audit_events')
    op.drop_index('ix_audit_events_spec_id', table_name='audit_events')
    op.drop_table('audit_events')
    with op.batch_alter_table('api_tokens') as batch:
        for column in ('revoked_at', 'expires_at', 'name'):
            batch.drop_column(column)
    with op.batch_alter_table('users') as batch:
        batch.drop_column('disabled_at')
