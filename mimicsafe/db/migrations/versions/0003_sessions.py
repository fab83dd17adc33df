"""web sessions held server-side; repeated rejected uploads counted on one review item

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

`web_sessions`: one row per logged-in browser, keyed by the SHA-256 of its cookie, so that logout, a
password reset, disabling an account or "log out everywhere" ends a copied cookie at once (issue 17 §5).
`uploads.repeat_of_id`: a rejected file an artist uploads again joins the review item of its first copy
instead of making another one (issue 17 §6).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'web_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_web_sessions_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
        sa.UniqueConstraint('token_sha256', name=op.f('uq_web_sessions_token_sha256')),
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_web_sessions_expires_at'), ['expires_at'], unique=False)
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('repeat_of_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_uploads_repeat_of_id'), ['repeat_of_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_uploads_repeat_of_id_uploads'), 'uploads', ['repeat_of_id'],
                                    ['id'])


def downgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_uploads_repeat_of_id_uploads'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_uploads_repeat_of_id'))
        batch_op.drop_column('repeat_of_id')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_expires_at'))
        batch_op.drop_index(batch_op.f('ix_web_sessions_user_id'))
    op.drop_table('web_sessions')
