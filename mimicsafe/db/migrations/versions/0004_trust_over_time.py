"""trust over time: upload fingerprints and suspensions, dataset rows, re-scans, disputes, withheld outputs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

A work protected after an upload was accepted is searched against the accepted uploads (their
fingerprints are now kept); a match suspends the upload and everything trained on it. Datasets list
their uploads as rows too, so that lineage reads both directions. Existing manifests are copied into
those rows here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('suspended_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('lora_models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blocked_outputs', sa.Integer(), nullable=False, server_default='0'))

    op.create_table('dataset_uploads',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_uploads_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], name=op.f('fk_dataset_uploads_upload_id_uploads')),
    sa.PrimaryKeyConstraint('dataset_id', 'upload_id', name=op.f('pk_dataset_uploads'))
    )
    with op.batch_alter_table('dataset_uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_uploads_upload_id'), ['upload_id'], unique=False)

    op.create_table('rescans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('suspended', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rescans'))
    )
    with op.batch_alter_table('rescans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rescans_status'), ['status'], unique=False)

    op.create_table('suspensions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.Column('rescan_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('protected_kind', sa.String(length=16), nullable=False),
    sa.Column('protected_id', sa.Integer(), nullable=False),
    sa.Column('protected_key', sa.String(length=80), nullable=False),
    sa.Column('protected_owner_id', sa.Integer(), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('prior_review_state', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_suspensions_decided_by_id_users')),
    sa.ForeignKeyConstraint(['protected_owner_id'], ['users.id'],
                            name=op.f('fk_suspensions_protected_owner_id_users')),
    sa.ForeignKeyConstraint(['rescan_id'], ['rescans.id'], name=op.f('fk_suspensions_rescan_id_rescans')),
    sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], name=op.f('fk_suspensions_upload_id_uploads')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suspensions'))
    )
    with op.batch_alter_table('suspensions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suspensions_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_suspensions_upload_id'), ['upload_id'], unique=False)

    op.create_table('disputes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('claimant_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('evidence_url', sa.String(length=2048), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=False),
    sa.Column('new_item_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['claimant_id'], ['users.id'], name=op.f('fk_disputes_claimant_id_users')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_disputes_decided_by_id_users')),
    sa.ForeignKeyConstraint(['item_id'], ['portfolio_items.id'], name=op.f('fk_disputes_item_id_portfolio_items')),
    sa.ForeignKeyConstraint(['new_item_id'], ['portfolio_items.id'],
                            name=op.f('fk_disputes_new_item_id_portfolio_items')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_disputes_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes'))
    )
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disputes_claimant_id'), ['claimant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disputes_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disputes_state'), ['state'], unique=False)

    # Existing manifests: one row per listed upload.
    bind = op.get_bind()
    datasets = sa.table('datasets', sa.column('id', sa.Integer), sa.column('manifest', sa.JSON))
    links = sa.table('dataset_uploads', sa.column('dataset_id', sa.Integer), sa.column('upload_id', sa.Integer))
    rows = []
    for dataset_id, manifest in bind.execute(sa.select(datasets.c.id, datasets.c.manifest)):
        ids = {int(item['upload_id']) for item in (manifest or {}).get('items', [])}
        rows += [{'dataset_id': dataset_id, 'upload_id': upload_id} for upload_id in sorted(ids)]
    if rows:
        op.bulk_insert(links, rows)


def downgrade() -> None:
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disputes_state'))
        batch_op.drop_index(batch_op.f('ix_disputes_item_id'))
        batch_op.drop_index(batch_op.f('ix_disputes_claimant_id'))
    op.drop_table('disputes')
    with op.batch_alter_table('suspensions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suspensions_upload_id'))
        batch_op.drop_index(batch_op.f('ix_suspensions_state'))
    op.drop_table('suspensions')
    with op.batch_alter_table('rescans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rescans_status'))
    op.drop_table('rescans')
    with op.batch_alter_table('dataset_uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_uploads_upload_id'))
    op.drop_table('dataset_uploads')
    with op.batch_alter_table('lora_models', schema=None) as batch_op:
        batch_op.drop_column('blocked_outputs')
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_column('suspended_at')
        batch_op.drop_column('fingerprint')
