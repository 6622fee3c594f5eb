"""Two ways to see a model's attention and residual stream, behind one interface.

A backend runs one right-padded batch and reports to a *sink* (see ``session.ProbeCollector``):

    sink.attention_rows(layer, P_rows, start)  # P_rows (B, H, C, Tk): query rows start..start+C-1
    sink.residual(index, hidden)               # hidden (B, T, d); index 0 = embeddings, l+1 = layer l

``run(input_ids, attention_mask, sink, inputs_embeds=None)``: with ``inputs_embeds`` (B, T, d) the
model reads those vectors instead of embedding ``input_ids`` (continuous-interface probes).

- ``torch`` (default): hooks on the HF model's own modules. The model runs its usual attention
  (SDPA); a pre-hook on each attention module recomputes that layer's queries and keys and
  streams exact attention rows chunk by chunk (``attention.py``). Only ``model.model`` runs:
  the LM head's (B, T, vocab) logits are not needed for any statistic.
- ``tl``: TransformerLens 4 ``TransformerBridge`` + ``run_with_cache``; the bridge forces eager
  attention and caches ``blocks.{l}.attn.hook_pattern`` [B, H, T, T] for every layer of the
  batch. The bridge rewires the modules of the model it is given, so it gets a deep copy: the
  caller's model stays untouched.

Both must agree with the HF model's own ``output_attentions`` (tests/test_capture.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from karma_probe.capture import hooks as H
from karma_probe.capture.attention import causal_rows, queries_keys
from karma_probe.errors import BadInput

BACKENDS = ("torch", "tl")
DEFAULT_CHUNK = 256


def _first(output):
    """HF modules return a tensor or a tuple whose first element is the hidden state."""
    return output[0] if isinstance(output, tuple) else output


class TorchBackend:
    name = "torch"

    def __init__(self, model, *, chunk_size: int = DEFAULT_CHUNK):
        self.model = model
        self.chunk_size = chunk_size
        self.attn = H.attention_modules(model)
        self.layers = H.decoder_layers(model)
        self.embed = H.embedding_module(model)
        if getattr(model.config, "sliding_window", None) and getattr(model.config, "use_sliding_window", True):
            raise BadInput(f"{type(model).__name__}: sliding-window attention is not supported by the torch backend")

    def _attention_hook(self, layer: int, sink):
        def hook(module, args, kwargs):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # (B, T, d)
            pe = kwargs.get("position_embeddings")
            if pe is None:
                raise RuntimeError(f"layer {layer}: attention called without position_embeddings")
            q, k = queries_keys(module, x, pe)  # (B, H, T, hs) each
            for start, rows in causal_rows(q, k, module.scaling, self.chunk_size):
                sink.attention_rows(layer, rows, start)

        return hook

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sink, inputs_embeds=None) -> None:
        regs = []
        if inputs_embeds is None:
            regs.append((self.embed, "forward", lambda m, a, kw, out: sink.residual(0, _first(out))))
        else:  # the embedding layer does not run: the residual stream starts at the given vectors
            sink.residual(0, inputs_embeds)
        for layer, (block, attn) in enumerate(zip(self.layers, self.attn)):
            regs.append((block, "forward", lambda m, a, kw, out, i=layer + 1: sink.residual(i, _first(out))))
            regs.append((attn, "forward_pre", self._attention_hook(layer, sink)))
        tokens = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        with H.hooked(regs):
            H.decoder(self.model)(attention_mask=attention_mask, use_cache=False, **tokens)

    def close(self) -> None:
        pass


class TransformerLensBackend:
    name = "tl"

    def __init__(self, model, tokenizer, *, chunk_size: int = DEFAULT_CHUNK):
        from transformer_lens.model_bridge import TransformerBridge

        # The bridge re-reads the tokenizer by its saved path, so it must be a local directory.
        path = getattr(tokenizer, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
        if not path or not Path(path).is_dir():
            raise BadInput(f"--backend tl needs a tokenizer loaded from a local directory, got {path!r}")
        self.chunk_size = chunk_size
        self.n_layers = model.config.num_hidden_layers
        self.bridge = TransformerBridge.boot_transformers(str(path), hf_model=copy.deepcopy(model),
                                                          tokenizer=copy.deepcopy(tokenizer))
        self.bridge.eval()
        self.names = ({H.EMBED} | {H.resid_post(i) for i in range(self.n_layers)}
                      | {H.attn_pattern(i) for i in range(self.n_layers)})

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sink, inputs_embeds=None) -> None:
        if inputs_embeds is not None:
            raise BadInput("--backend tl captures text-interface runs only; use --backend torch for a "
                           "continuous-interface run (its probes are item input embeddings)")
        _, cache = self.bridge.run_with_cache(input_ids, attention_mask=attention_mask,
                                              names_filter=lambda name: name in self.names)
        sink.residual(0, cache[H.EMBED])
        for layer in range(self.n_layers):
            sink.residual(layer + 1, cache[H.resid_post(layer)])
            pattern = cache[H.attn_pattern(layer)]  # (B, H, T, T)
            for start in range(0, pattern.shape[2], self.chunk_size):
                end = min(start + self.chunk_size, pattern.shape[2])
                sink.attention_rows(layer, pattern[:, :, start:end, :end], start)

    def close(self) -> None:
        self.bridge = None  # drop the deep copy of the model


def make_backend(name: str, model, tokenizer, *, chunk_size: int = DEFAULT_CHUNK):
    if chunk_size < 1:
        raise BadInput(f"--chunk-size must be >= 1, got {chunk_size}")
    if name == "torch":
        return TorchBackend(model, chunk_size=chunk_size)
    if name == "tl":
        return TransformerLensBackend(model, tokenizer, chunk_size=chunk_size)
    raise BadInput(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
