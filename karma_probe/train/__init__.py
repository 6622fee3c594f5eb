"""Training: action-only, KARMA and the ablations on one code path (``karma-probe train``).

- ``batches``      seeded training batches (a resumed run sees the batches it would have seen)
- ``objectives``   L_act, L_gen, L_rec and their weighted sum; a new loss goes here
- ``loop``         the resumable trainer (Accelerate), gradient balancing, checkpoints, train_log
- ``evaluate``     full-catalogue HR@K / NDCG@K / MRR and the popularity and Markov baselines
- ``distributed``  torchrun / accelerate launch: one process group, rank 0 the only writer

The recipe (TrainConfig, presets) is ``core.config``: every stage reads it, so it lives below them.

Imports: core, rundir, data, model.
"""
