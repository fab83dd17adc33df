"""Trust over time: a verdict is a judgement at one moment; what is built on an upload follows its later state.

- `index`: the accepted uploads, searchable by a work that becomes protected later (the other
  direction of the gate's registry), kept current from the audit log like the registry.
- `rescan`: the Huey job that searches every newly protected work against that index and confirms
  each candidate with the gate's own search; resumable, with progress in its `Rescan` row.
- `suspension`: a matching upload is suspended (`matches_newly_protected`); the datasets listing it
  are tainted and the models trained on them suspended (derived from the upload's state, so an
  admin's override restores all of it at once); the admin upholds or overrides.
"""
