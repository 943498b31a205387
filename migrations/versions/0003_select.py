"""active revision: specs built before it existed take their latest succeeded revision

Revision ID: 0003_select
Revises: 0003_audit
Create Date: 2026-12-01 11:00:00

"""
from alembic import op


revision = '0003_select'
down_revision = '0003_audit'
branch_labels = None
depends_on = None


def upgrade():
    # Without this the catalogue would show "no image yet" for every spec built before the
    # upgrade: its image is the latest succeeded one, which `latest` already points at.
    op.execute(
        "UPDATE image_specs SET active_revision = ("
        " SELECT max(build_jobs.revision) FROM build_jobs"
        " WHERE build_jobs.spec_id = image_specs.id AND build_jobs.status = 'succeeded')"
        " WHERE active_revision IS NULL"
    )


def downgrade():
    pass  # the column belongs to 0002; the values stay meaningful
