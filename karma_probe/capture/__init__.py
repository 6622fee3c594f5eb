"""Capture: hooks on a fixed, seeded probe set → exact, streaming, mergeable attention and
residual-stream statistics, a few full attention maps and the hidden states the analyzers need.

Modules, in the order data flows through them:

- ``probes``    the probe set (history prompts of test users + general passages)
- ``hooks``     the one place that registers hooks (always removed), canonical activation names
- ``attention`` the attention function registered in transformers' attention interface: exact
                rows from each layer's real queries, keys and mask, one query chunk at a time, and
                the layer's output from the same softmax
- ``backends``  torch (the model's own forward through that function, hooks for the residual
                stream) or TransformerLens ``run_with_cache``
- ``reducers``  streaming sums per layer and head; ``merge`` combines shards
- ``session``   batches through a backend into reducers, maps and marker hidden states
- ``writer``    merging shards of RUN/capture/ (the format itself: ``karma_probe.rundir.capture``)
- ``run``       a run directory (or a new reference run) end to end

Imports: core, rundir, data, model.
"""
