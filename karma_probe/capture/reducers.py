"""Streaming, mergeable reducers: attention and residual-stream statistics as plain sums.

P is a causal attention matrix of one probe of length n (rows = queries i, columns = keys j),
per layer l and head h. Query 0 can only attend to itself, so it is left out of the row
statistics. Per probe, the reducers add:

    first_mass_sum[l, h]   += Σ_{1<=i<n} P[i, 0]
    rows                   += n - 1
    entropy_sum[l, h]      += Σ_{1<=i<n} H(P[i, :]) / log(i + 1),   H(p) = -Σ_j p_j log p_j  (0 log 0 = 0)
    key_received_sum[l,h,j] += r_j,   r_j = Σ_{j<=i<n} P[i, j]        (r_0 includes P[0, 0] = 1)
    key_positions[j]       += 1 for j < n
    key_conc_sum[l, h]     += Σ top-k of {r_j : 1<=j<n} / Σ_{1<=j<n} r_j,   k = ⌈5% · (n - 1)⌉
    probes                 += 1
    massive_sum[m]         += max|h_m| / median|h_m|   (over all tokens and dims of the probe)
    massive_max[m]          = max(massive_max[m], same ratio)

with m = residual-stream index (0 = embeddings, l+1 = output of decoder layer l). Next to the sums,
the same statistics are kept **per probe** (one row per probe, in probe order), so an analyzer can
average over probes (each probe weighs the same) and bootstrap over them:

    first_mass[p, l, h]    = Σ_{1<=i<n} P[i, 0] / (n - 1)            (the probe's mean over its rows)
    entropy[p, l, h]       = Σ_{1<=i<n} H(P[i, :]) / log(i + 1) / (n - 1)
    key_conc[p, l, h]      = the probe's top-k share (the term key_conc_sum adds)
    probe_rows[p]          = n - 1
    massive[p, m]          = the probe's max|h_m| / median|h_m|

Everything
but the key-concentration share is a sum over rows of P, so it accumulates one query chunk at a
time (:meth:`AttentionReducer.add_rows`); the share needs a probe's complete r, so it is taken
when the batch ends (:meth:`AttentionReducer.end_batch`). Because all statistics are sums (or
maxima) or per-probe rows, reductions of disjoint probe shards combine exactly with :func:`merge`
(per-probe rows concatenate in shard order).

Accumulators are float64 (sums over thousands of rows); :meth:`state` hands out float32 as the
capture format (checkpoints.md) stores.
"""

from __future__ import annotations

import torch

from karma_probe.core.errors import BadInput

TOP_PERCENT = 5  # the "barcode" statistic: share of received mass on the top ⌈5%⌉ key positions
ATTN_KEYS = ("attn.first_mass_sum", "attn.rows", "attn.entropy_sum", "attn.key_received_sum",
             "attn.key_positions", "attn.key_conc_sum", "attn.probes")
RESID_KEYS = ("resid.massive_sum", "resid.massive_max")
# per-probe statistics: first dim = probe (concatenated, not added, on merge)
PER_PROBE_KEYS = ("attn.first_mass", "attn.entropy", "attn.key_conc", "attn.probe_rows", "resid.massive")
_POSITION_KEYS = ("attn.key_received_sum", "attn.key_positions")  # last dim = key position j (padded on merge)


def top_count(n: int) -> int:
    """k = ⌈TOP_PERCENT% · n⌉ in integer arithmetic (floats make ⌈0.05 · 20⌉ fragile)."""
    return (TOP_PERCENT * n + 99) // 100


def top_share(r: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-probe key concentration: share of Σ_{1<=j<n} r_j on the top ⌈5%⌉ positions j >= 1.

    ``r``: (B, H, T) received mass of each probe, zero beyond its length; ``lengths``: (B,).
    Returns (B, H). A probe whose rows all put their whole mass on key 0 has nothing left to
    concentrate: its share is defined as 0.
    """
    r1 = r[..., 1:]  # (B, H, T-1)   keys j >= 1
    top, _ = torch.sort(r1, dim=-1, descending=True)
    cum = torch.cumsum(top, dim=-1)  # (B, H, T-1)
    k = torch.tensor([top_count(int(n) - 1) for n in lengths], device=r.device)  # (B,)
    idx = (k - 1).clamp_min(0)[:, None, None].expand(-1, r.shape[1], 1)  # (B, H, 1)
    top_mass = cum.gather(-1, idx).squeeze(-1)  # (B, H)
    total = r1.sum(-1)  # (B, H)
    share = torch.where(total > 0, top_mass / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))
    return torch.where((k > 0)[:, None], share, torch.zeros_like(share))


class AttentionReducer:
    """Attention statistics of one probe set, fed one batch and one query chunk at a time.

    Per batch: ``begin_batch(lengths)``, then for every layer every query row exactly once via
    ``add_rows(layer, P_rows, start)`` in any chunking, then ``end_batch()``.
    """

    def __init__(self, n_layers: int, n_heads: int, max_len: int):
        f64 = dict(dtype=torch.float64)
        self.n_layers, self.n_heads, self.max_len = n_layers, n_heads, max_len
        self.first_mass = torch.zeros(n_layers, n_heads, **f64)
        self.entropy = torch.zeros(n_layers, n_heads, **f64)
        self.received = torch.zeros(n_layers, n_heads, max_len, **f64)
        self.positions = torch.zeros(max_len, **f64)
        self.conc = torch.zeros(n_layers, n_heads, **f64)
        self.rows = 0
        self.probes = 0
        # per probe, one (B, L, H) / (B,) tensor per batch: row means and the top-k share
        self.per_probe: dict[str, list[torch.Tensor]] = {"first_mass": [], "entropy": [], "key_conc": [], "probe_rows": []}
        self._lengths: torch.Tensor | None = None
        self._first: torch.Tensor | None = None  # (B, L, H) Σ_rows P[i,0] of the current batch
        self._ent: torch.Tensor | None = None  # (B, L, H) Σ_rows H / log(i+1) of the current batch
        self._r: list[torch.Tensor] = []  # per layer: (B, H, T) received mass of the current batch
        self._rows_seen: list[int] = []

    def begin_batch(self, lengths: torch.Tensor) -> None:
        lengths = lengths.to(torch.long).cpu()
        if int(lengths.max()) > self.max_len:
            raise ValueError(f"probe of {int(lengths.max())} tokens exceeds max_len={self.max_len}")
        if int(lengths.min()) < 2:
            raise BadInput("a probe needs at least 2 tokens (query 0 only attends to itself)")
        T = int(lengths.max())
        self._lengths = lengths
        self._r = [torch.zeros(len(lengths), self.n_heads, T, dtype=torch.float64) for _ in range(self.n_layers)]
        self._rows_seen = [0] * self.n_layers
        self._first = torch.zeros(len(lengths), self.n_layers, self.n_heads, dtype=torch.float64)
        self._ent = torch.zeros(len(lengths), self.n_layers, self.n_heads, dtype=torch.float64)

    @torch.no_grad()
    def add_rows(self, layer: int, probs: torch.Tensor, start: int, entropy: torch.Tensor | None = None) -> None:
        """Accumulate query rows ``start .. start+C-1`` of layer ``layer``: ``probs`` (B, H, C, Tk), Tk >= start+C.

        ``entropy`` (B, H, C): the rows' H(P[i, :]) where the caller already has them (the attention
        function gets them from the softmax's normalizer); else they are taken from ``probs``.
        """
        B, H, C, Tk = probs.shape
        T = self._r[layer].shape[-1]
        n = self._lengths.to(probs.device)
        i = torch.arange(start, start + C, device=probs.device)  # (C,)  query positions
        valid = i[None, :] < n[:, None]  # (B, C)   real (non-padding) rows
        row_ok = valid & (i[None, :] >= 1)  # (B, C)   rows that enter the row statistics
        # Row-local work stays in the probabilities' float32 (a row has at most T terms); what is
        # carried across rows and batches is accumulated in float64.
        p = probs.float()
        rows = row_ok[:, None, :].to(p.dtype)  # (B, 1, C)
        first = (p[..., 0] * rows).sum(2).double().cpu()  # (B, H)
        self._first[:, layer] += first
        self.first_mass[layer] += first.sum(0)
        ent = -torch.special.xlogy(p, p).sum(-1) if entropy is None else entropy.float()  # (B, H, C)
        norm = torch.log((i + 1).to(p.dtype))  # (C,)   log 1 = 0 only at row 0, which row_ok drops
        ent = torch.where(row_ok[:, None, :], ent / norm, torch.zeros_like(ent)).double().sum(2).cpu()  # (B, H)
        self._ent[:, layer] += ent
        self.entropy[layer] += ent.sum(0)
        keep = min(Tk, T)  # columns beyond the batch's longest probe hold only padded rows' mass
        # r_j += Σ_real rows P[i, j]: one (1, C) · (C, keep) product per (probe, head)
        self._r[layer][..., :keep] += torch.matmul(valid.to(p.dtype)[:, None, None, :], p[..., :keep]).squeeze(2).double().cpu()
        self._rows_seen[layer] += C

    @torch.no_grad()
    def end_batch(self) -> None:
        T = self._r[0].shape[-1]
        missing = [lay for lay, seen in enumerate(self._rows_seen) if seen < T]
        if missing:  # a hook that did not fire would silently bias every statistic
            raise RuntimeError(f"layers {missing} did not report all {T} query rows of the batch")
        lengths = self._lengths
        shares = []
        for layer, r in enumerate(self._r):
            self.received[layer, :, :T] += r.sum(0)
            shares.append(top_share(r, lengths))  # (B, H)
            self.conc[layer] += shares[-1].sum(0)
        self.positions[:T] += (torch.arange(T)[None, :] < lengths[:, None]).sum(0).double()
        self.rows += int((lengths - 1).sum())
        self.probes += len(lengths)
        rows = (lengths - 1).double()[:, None, None]  # >= 1 (begin_batch refuses shorter probes)
        self.per_probe["first_mass"].append(self._first / rows)
        self.per_probe["entropy"].append(self._ent / rows)
        self.per_probe["key_conc"].append(torch.stack(shares, 1))  # (B, L, H)
        self.per_probe["probe_rows"].append(lengths.double() - 1)
        self._r, self._lengths, self._first, self._ent = [], None, None, None

    def state(self) -> dict[str, torch.Tensor]:
        f = torch.float32
        return {
            "attn.first_mass_sum": self.first_mass.to(f),
            "attn.rows": torch.tensor([self.rows], dtype=f),
            "attn.entropy_sum": self.entropy.to(f),
            "attn.key_received_sum": self.received.to(f),
            "attn.key_positions": self.positions.to(f),
            "attn.key_conc_sum": self.conc.to(f),
            "attn.probes": torch.tensor([self.probes], dtype=f),
            **{f"attn.{k}": _cat(v, (0, self.n_layers, self.n_heads) if k != "probe_rows" else (0,)).to(f)
               for k, v in self.per_probe.items()},
        }


def _cat(parts: list[torch.Tensor], empty: tuple[int, ...]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(empty, dtype=torch.float64)


def massive_ratio(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """max|h| / median|h| over the real tokens and all dims of each probe → (B,).

    ``hidden``: (B, T, d). The median of an even count is the lower middle value (torch.median).
    """
    out = torch.empty(hidden.shape[0], dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        a = hidden[b, :n].detach().abs().flatten().float()  # (n·d,)
        out[b] = (a.max() / a.median().clamp_min(torch.finfo(torch.float32).tiny)).double().cpu()
    return out


class ResidualReducer:
    """Massive-activation ratio of the residual stream, per residual index (L+1 of them)."""

    def __init__(self, n_residual: int):
        self.total = torch.zeros(n_residual, dtype=torch.float64)
        self.maximum = torch.full((n_residual,), float("-inf"), dtype=torch.float64)
        self.ratios: list[list[torch.Tensor]] = [[] for _ in range(n_residual)]  # per index: (B,) per batch

    @torch.no_grad()
    def add(self, index: int, hidden: torch.Tensor, lengths: torch.Tensor) -> None:
        ratio = massive_ratio(hidden, lengths)  # (B,)
        self.total[index] += ratio.sum()
        self.maximum[index] = torch.maximum(self.maximum[index], ratio.max())
        self.ratios[index].append(ratio)

    def state(self) -> dict[str, torch.Tensor]:
        cols = [_cat(r, (0,)) for r in self.ratios]
        n = max(len(c) for c in cols)  # an index not reported for a probe is NaN there (a capture reports all)
        per_probe = torch.stack([torch.nn.functional.pad(c, (0, n - len(c)), value=float("nan")) for c in cols], 1)  # (N, L+1)
        return {"resid.massive_sum": self.total.float(), "resid.massive_max": self.maximum.float(),
                "resid.massive": per_probe.float()}


def merge(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Combine the stats of two disjoint probe shards: sums add, ``*_max`` take the maximum,
    per-probe rows (:data:`PER_PROBE_KEYS`) concatenate, ``a``'s probes first.

    Keys are the stats.safetensors keys (``{set}.attn.*``, ``{set}.resid.*``); a key present in
    only one side is kept as is. Per-position tensors of different lengths (captures with
    different ``max_len``) are zero-padded to the longer one first.
    """
    out = dict(a)
    for key, vb in b.items():
        if key not in out:
            out[key] = vb
            continue
        va = out[key]
        if key.endswith(_POSITION_KEYS) and va.shape[-1] != vb.shape[-1]:
            T = max(va.shape[-1], vb.shape[-1])
            va = torch.nn.functional.pad(va, (0, T - va.shape[-1]))
            vb = torch.nn.functional.pad(vb, (0, T - vb.shape[-1]))
        if key.endswith(PER_PROBE_KEYS):
            if va.shape[1:] != vb.shape[1:]:
                raise BadInput(f"cannot merge {key}: shapes {tuple(va.shape)} and {tuple(vb.shape)} differ (another model?)")
            out[key] = torch.cat([va, vb])
            continue
        if va.shape != vb.shape:
            raise BadInput(f"cannot merge {key}: shapes {tuple(va.shape)} and {tuple(vb.shape)} differ (another model?)")
        out[key] = torch.maximum(va, vb) if key.endswith("_max") else va + vb
    return out
