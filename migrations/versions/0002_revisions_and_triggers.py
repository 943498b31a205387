"""revisions and triggers: the manifest (job_packages), test command, active revision,
base-image watch fields, why each job started

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('image_specs') as batch:
        batch.add_column(sa.Column('test_command', sa.Text(), nullable=True))
        batch.add_column(sa.Column('active_revision', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('auto_activate', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(sa.Column('base_policy', sa.String(length=16), server_default='rebuild', nullable=False))
        batch.add_column(sa.Column('base_update_digest', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('base_checked_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('base_check_error', sa.Text(), nullable=True))
    with op.batch_alter_table('build_jobs') as batch:
        batch.add_column(sa.Column('trigger_kind', sa.String(length=32), server_default='unknown', nullable=False))
        batch.add_column(sa.Column('trigger_user', sa.String(length=80), nullable=True))
        batch.add_column(sa.Column('trigger_detail', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('base_digest', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('os_name', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('image_user', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('packages_count', sa.Integer(), nullable=True))
    op.create_table('job_packages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('manager', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=255), nullable=False),
    sa.Column('arch', sa.String(length=64), nullable=True),
    sa.Column('build', sa.String(length=255), nullable=True),
    sa.Column('channel', sa.String(length=255), nullable=True),
    sa.Column('requested', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['build_jobs.id'], name=op.f('fk_job_packages_job_id_build_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_packages'))
    )
    op.create_index('ix_job_packages_job_manager_name', 'job_packages', ['job_id', 'manager', 'name'], unique=False)


def downgrade():
    op.drop_index('ix_job_packages_job_manager_name', table_name='job_packages')
    op.drop_table('job_packages')
    with op.batch_alter_table('build_jobs') as batch:
        for column in ('packages_count', 'image_user', 'os_name', 'base_digest', 'trigger_detail',
                       'trigger_user', 'trigger_kind'):
            batch.drop_column(column)
    with op.batch_alter_table('image_specs') as batch:
        for column in ('base_check_error', 'base_checked_at', 'base_update_digest', 'base_policy',
                       'auto_activate', 'active_revision', 'test_command'):
            batch.drop_column(column)
