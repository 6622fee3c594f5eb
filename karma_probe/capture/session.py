"""Run a probe set through a backend, batch by batch, and collect what the capture keeps.

For each probe set (``history``, ``text``, ``user``) a :class:`ProbeCollector` is the backend's
sink: it feeds the streaming reducers, copies the full attention maps of the first K history
probes, and keeps the residual stream at the last real token of every probe for every layer (for
a history prompt that is the interest marker). Nothing of size (B, H, T, T) outlives one query
chunk unless it is one of the K maps.

Tokenization matches the retriever (``add_special_tokens=False``), except for the user's own
prompts, which get the model's tokenizer defaults (its BOS, as the model sees a prompt). A probe
longer than ``max_len`` is cut: history prompts from the left, so the interest marker at the end
survives; passages and user prompts from the right. Batches are right-padded.

A continuous-interface run (``history_inputs`` given: a :class:`HistoryInputs`) sees its history
probes as the retriever's own input codes (its first-token prefix, then one input embedding per
item: ``KarmaModel.history_sequence`` / ``history_inputs``); the maps' ``input_ids`` then hold
those codes (item indices >= 0, prefix tokens < 0, prompts.history_codes). Text probes are always tokens: they measure the backbone on language.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from karma_probe.capture.probes import SETS, ProbeSet
from karma_probe.capture.reducers import AttentionReducer, ResidualReducer
from karma_probe.core.errors import BadInput


@dataclass(frozen=True)
class HistoryInputs:
    """How a continuous-interface run reads a history: ``sequence(items, max_items=None)`` → input
    codes, ``embed(codes (B, T))`` → input embeddings (B, T, d)."""

    sequence: object
    embed: object


@dataclass
class ProbeResult:
    """What one capture of a probe set holds in memory before it is written."""

    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # "{set}.attn.*", "{set}.resid.*"
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # "probe{k}.attn", "probe{k}.input_ids"
    marker_hidden: torch.Tensor | None = None  # (N_history, L+1, d)
    last_hidden: dict[str, torch.Tensor] = field(default_factory=dict)  # by set: (N_set, L+1, d) at the last token
    lengths: dict[str, list[int]] = field(default_factory=dict)  # tokens per probe, by set
    truncated: dict[str, int] = field(default_factory=dict)  # probes cut to max_len, by set


def check_tokenizer(model, tokenizer) -> None:
    """A tokenizer from another model would index past the embedding table (or worse, silently not)."""
    vocab = model.config.vocab_size
    if len(tokenizer) > vocab:
        raise BadInput(f"tokenizer does not match the model: it has {len(tokenizer)} tokens, "
                       f"the model's vocabulary has {vocab}")


def encode(tokenizer, texts: list[str], max_len: int, *, keep_end: bool,
           special: bool = False) -> tuple[list[list[int]], int]:
    """Token ids per text, cut to ``max_len`` (keeping the end if ``keep_end``) → (ids, number cut).
    ``special``: the tokenizer's special tokens (BOS, ...) as its defaults add them."""
    ids = tokenizer(list(texts), add_special_tokens=special)["input_ids"] if texts else []
    cut = sum(len(x) > max_len for x in ids)
    return [x[-max_len:] if keep_end else x[:max_len] for x in ids], cut


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """→ input_ids (B, T), attention_mask (B, T), lengths (B,): the retriever's padding, plus lengths."""
    from karma_probe.core.tensors import pad_right as pad

    ids, mask = pad(seqs, pad_id)
    return ids, mask, mask.sum(1)


class ProbeCollector:
    """The backends' sink for one probe set (interface in backends.py)."""

    def __init__(self, n_layers: int, n_heads: int, width: int, max_len: int, *, keep_marker: bool):
        self.attn = AttentionReducer(n_layers, n_heads, max_len)
        self.resid = ResidualReducer(n_layers + 1)
        self.n_layers, self.n_heads, self.width = n_layers, n_heads, width
        self.keep_marker = keep_marker
        self.markers: list[torch.Tensor] = []  # per batch: (B, L+1, d)
        self.maps: dict[int, torch.Tensor] = {}  # global probe index k → (L, H, n_k, n_k)
        self._batch_maps: list[tuple[int, int]] = []  # (row in batch, k)

    def begin_batch(self, lengths: torch.Tensor, map_index: list[int | None]) -> None:
        self.lengths = lengths
        self.attn.begin_batch(lengths)
        self._marker = torch.zeros(len(lengths), self.n_layers + 1, self.width) if self.keep_marker else None
        self._batch_maps = [(b, k) for b, k in enumerate(map_index) if k is not None]
        for b, k in self._batch_maps:
            n = int(lengths[b])
            self.maps[k] = torch.zeros(self.n_layers, self.n_heads, n, n)

    def attention_rows(self, layer: int, probs: torch.Tensor, start: int, entropy: torch.Tensor | None = None) -> None:
        self.attn.add_rows(layer, probs, start, entropy)
        for b, k in self._batch_maps:
            n = self.maps[k].shape[-1]
            stop = min(start + probs.shape[2], n)
            if stop > start:  # rows of this chunk that belong to the probe
                cols = min(probs.shape[3], n)
                self.maps[k][layer, :, start:stop, :cols] = probs[b, :, : stop - start, :cols].float().cpu()

    def residual(self, index: int, hidden: torch.Tensor) -> None:
        self.resid.add(index, hidden, self.lengths)
        if self._marker is not None:
            last = (self.lengths - 1).to(hidden.device)  # the marker: last real token of each prompt
            self._marker[:, index] = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float().cpu()

    def end_batch(self) -> None:
        self.attn.end_batch()
        if self._marker is not None:
            self.markers.append(self._marker)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": v for k, v in (self.attn.state() | self.resid.state()).items()}


def capture_probes(model, tokenizer, probes: ProbeSet, backend, *, max_len: int = 256, batch_size: int = 8,
                   full_maps: int = 4, map_offset: int = 0, progress: bool = True,
                   history_inputs=None) -> ProbeResult:
    """Run every probe set through ``backend``; statistics, K full maps, last-token hidden states.

    ``map_offset`` is the global index of this shard's first history probe: probe k gets a full
    map when k < ``full_maps``, so shards of one probe set produce the maps a single capture would.
    """
    if not len(probes):
        raise BadInput("empty probe set: nothing to capture")
    if max_len < 2:
        raise BadInput(f"--max-len must be >= 2, got {max_len}")
    if batch_size < 1:
        raise BadInput(f"--batch-size must be >= 1, got {batch_size}")
    check_tokenizer(model, tokenizer)
    c = model.config
    L, Hq, d = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    encoded = {}
    result = ProbeResult()
    for name in SETS:
        texts = [p.text for p in probes.by_set(name)]
        if name == "history" and history_inputs is not None:  # the run's codes: prefix tokens, then items
            seqs = [history_inputs.sequence(p.items) for p in probes.history]
            prefix = len(seqs[0]) - len(probes.history[0].items) if seqs else 0
            encoded[name] = [s if len(s) <= max_len else history_inputs.sequence(p.items, max_len - prefix)
                             for s, p in zip(seqs, probes.history)]
            result.truncated[name] = sum(len(s) > max_len for s in seqs)
            result.lengths[name] = [len(x) for x in encoded[name]]
            continue
        encoded[name], result.truncated[name] = encode(tokenizer, texts, max_len, keep_end=name == "history",
                                                       special=name == "user")
        result.lengths[name] = [len(x) for x in encoded[name]]
        too_short = [i for i, n in enumerate(result.lengths[name]) if n < 2]
        if too_short:
            raise BadInput(f"{name} probe {too_short[0]} has fewer than 2 tokens: {texts[too_short[0]]!r}")
        too_big = max((max(x) for x in encoded[name] if x), default=-1)
        if too_big >= c.vocab_size:
            raise BadInput(f"tokenizer does not match the model: token id {too_big} >= vocabulary size {c.vocab_size}")

    total = sum(math.ceil(len(encoded[n]) / batch_size) for n in SETS)
    bar = _progress(total, progress)
    device = next(model.parameters()).device
    try:
        for name in SETS:
            seqs = encoded[name]
            if not seqs:
                continue
            sink = ProbeCollector(L, Hq, d, max_len, keep_marker=True)
            for s in range(0, len(seqs), batch_size):
                ids, mask, lengths = pad_right(seqs[s: s + batch_size], pad_id)
                maps = [map_offset + s + b if name == "history" and map_offset + s + b < full_maps else None
                        for b in range(len(ids))]
                sink.begin_batch(lengths, maps)
                embeds = history_inputs.embed(ids.to(device)) if name == "history" and history_inputs else None
                backend.run(ids.to(device), mask.to(device), sink, inputs_embeds=embeds)
                sink.end_batch()
                bar.update(1)
            result.stats |= sink.state(name)
            for k, attn in sink.maps.items():
                result.maps[f"probe{k}.attn"] = attn
                result.maps[f"probe{k}.input_ids"] = torch.tensor(seqs[k - map_offset], dtype=torch.long)
            result.last_hidden[name] = torch.cat(sink.markers)  # (N, L+1, d)
            if name == "history":
                result.marker_hidden = result.last_hidden[name]
    finally:
        bar.close()
    if result.marker_hidden is None:
        result.marker_hidden = torch.zeros(0, L + 1, d)
    return result


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="capture", unit="batch", disable=not enabled, leave=False)
