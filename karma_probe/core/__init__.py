"""What every stage shares: the run recipe, errors, where a model runs, thread counts, tensor helpers.

- ``config``   TrainConfig (the ``train`` block of a run's config.json), the presets, the conditions;
               a new preset or training option goes here
- ``errors``   BadInput / CheckFailed: the exceptions that decide the exit code
- ``device``   ``--device`` / ``--dtype``: where a model runs and in which precision
- ``cpu``      how many torch threads to use on a shared CPU
- ``tensors``  padding, mean-pooling, batching (torch)

Imports: nothing of karma_probe.
"""
