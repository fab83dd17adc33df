"""training jobs: worker, heartbeat, checkpoint step and samples

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Lets a restarted worker tell an interrupted job (its worker is gone) from a running one, resume it from
its last checkpoint, and show the job's fixed-seed sample images.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('checkpoint_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('samples', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.drop_column('samples')
        batch_op.drop_column('checkpoint_step')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('worker')
