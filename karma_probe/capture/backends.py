"""Two ways to see a model's attention and residual stream, behind one interface.

A backend runs one right-padded batch and reports to a *sink* (see ``session.ProbeCollector``):

    sink.attention_rows(layer, P_rows, start, entropy=None)  # P_rows (B, H, C, Tk): query rows start..start+C-1
                                                             # entropy (B, H, C): their H(P[i, :]), if known
    sink.residual(index, hidden)      # hidden (B, T, d); index 0 = input of layer 0, l+1 = output of layer l

``run(input_ids, attention_mask, sink, inputs_embeds=None)``: with ``inputs_embeds`` (B, T, d) the
model reads those vectors instead of embedding ``input_ids`` (continuous-interface probes).

- ``torch`` (default): the model's own forward with its attention implementation switched to
  ``attention.capture_attention`` (transformers' attention interface) for the batch: every layer's
  real query, key, value and mask give exact attention rows, chunk by chunk, and the layer's output
  from the same probabilities. Any architecture whose HF implementation dispatches attention through
  ``ALL_ATTENTION_FUNCTIONS`` works, with no per-architecture code. Hooks on the decoder layers read
  the residual stream. Only the decoder runs: the LM head's (B, T, vocab) logits are not needed.
- ``tl``: TransformerLens 4 ``TransformerBridge`` + ``run_with_cache``; the bridge forces eager
  attention and caches ``blocks.{l}.attn.hook_pattern`` [B, H, T, T] for every layer of the
  batch. The bridge rewires the modules of the model it is given, so it gets a deep copy: the
  caller's model stays untouched. The second opinion, for architectures outside the interface.

Both must agree with the HF model's own ``output_attentions`` (tests/test_capture.py,
tests/test_capture_parity.py).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import torch

from karma_probe.capture import hooks as H
from karma_probe.capture.attention import capturing
from karma_probe.core.errors import BadInput

BACKENDS = ("torch", "tl")
DEFAULT_CHUNK = 256


def _first(output):
    """HF modules return a tensor or a tuple whose first element is the hidden state."""
    return output[0] if isinstance(output, tuple) else output


def _outside_interface(model, detail: str) -> BadInput:
    return BadInput(f"{type(model).__name__} {detail}, so the torch backend cannot see its attention; "
                    "use --backend tl")


class TorchBackend:
    name = "torch"

    def __init__(self, model, *, chunk_size: int = DEFAULT_CHUNK):
        if not getattr(model, "_supports_attention_backend", False):
            raise _outside_interface(model, "does not dispatch attention through transformers' AttentionInterface")
        self.model = model
        self.chunk_size = chunk_size
        self.layers = H.decoder_layers(model)
        # every module inside decoder layer l reports as layer l (robust to a missing or offset layer_idx)
        self.layer_of = {id(m): i for i, layer in enumerate(self.layers) for m in layer.modules()}

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sink, inputs_embeds=None) -> None:
        def first_input(module, args, kwargs):  # the residual stream entering layer 0
            sink.residual(0, kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

        regs = [(self.layers[0], "forward_pre", first_input)]
        for layer, block in enumerate(self.layers):
            regs.append((block, "forward", lambda m, a, kw, out, i=layer + 1: sink.residual(i, _first(out))))
        tokens = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        with H.hooked(regs), capturing(self.model, sink, self.layer_of, self.chunk_size) as cap:
            H.decoder(self.model)(attention_mask=attention_mask, use_cache=False, **tokens)
        missing = sorted(set(range(len(self.layers))) - cap.called)
        if missing:  # the layer computed its attention some other way: its statistics would be missing
            raise _outside_interface(self.model, f"layers {missing} did not call transformers' attention interface")

    def close(self) -> None:
        pass


@contextmanager
def _tl_failures(architecture: str):
    """TransformerLens' own failures on an architecture it does not adapt → one line, not a traceback."""
    try:
        yield
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the bridge raises, the user gets one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise BadInput(f"--backend tl: TransformerLens cannot capture {architecture}: {type(e).__name__}: {first}"
                       .rstrip(": ")) from e


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
        self.architecture = type(model).__name__
        with _tl_failures(self.architecture):
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
        with _tl_failures(self.architecture):
            _, cache = self.bridge.run_with_cache(input_ids, attention_mask=attention_mask,
                                                  names_filter=lambda name: name in self.names)
            cache = {name: cache[name] for name in self.names}
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
