"""Attention-sink and massive-activation metrics, from the capture's streamed sums.

P is a causal attention matrix of one probe of length n: rows are queries i, columns keys j,
P[i, j] = 0 for j > i, every row sums to 1. Query 0 can only attend to itself, so it is left out.
The capture (karma_probe/capture/reducers.py) adds, per layer l and head h, over every probe:

    first_mass_sum = Σ_{i≥1} P[i,0]            rows = Σ (n − 1)
    entropy_sum    = Σ_{i≥1} H(P[i,:]) / log(i+1)
    key_conc_sum   = Σ_probes top-⌈5%·(n−1)⌉ share of {r_j : j≥1},  r_j = Σ_{i≥j} P[i,j]
    massive_sum[m] = Σ_probes max|h_m| / median|h_m|   (m = 0 embeddings, m = l+1 after layer l)

and keeps the same statistics **per probe** (``first_mass``, ``entropy``, ``key_conc`` [N, L, H]:
each probe's mean over its rows i≥1, resp. its share; ``probe_rows`` [N] = n − 1; ``massive``
[N, L+1]), so no metric here needs a full ``[H, T, T]`` map.

**Probe-mean is the headline** (issue 13): ``sink_mass`` and ``attn_entropy`` average each
probe's row mean over probes, so every probe (every user) weighs the same. The pooled-rows
version Σ_probes Σ_rows / Σ_probes (n − 1) weighs a probe by its length (long histories count
more); it is kept as a record with ``set="history_pooled"``. ``key_concentration`` and
``massive_act`` were probe means already. Every headline gets a 95 % bootstrap interval over
probes (analyzers/bootstrap.py); a capture without per-probe statistics (made before they
existed) has none of the probe-mean metrics: they are absent until it is re-captured. The pure
functions on full matrices (``*_from_pattern``, :func:`attention_sums`) define the same numbers
directly; they are the known-answer tests' ground truth and the parity check of the capture.

Headline (``summary``) numbers are taken on the ``history`` probe set (the task's own prompts);
the ``text`` set (general passages) gets one record per metric with ``set="text"``, so damage
on task prompts can be told apart from damage on plain language. Per (layer, head) records exist
for the headline set and for the user's own prompts (``set="user"``, from ``--probes-file``); a
capture without history probes (a user's own model, no dataset) takes its headline on ``user``,
else ``text``, and says so in analysis.json ``headline_set``. A consumer that indexes records by
(metric, layer, head) takes the headline set's (``Analysis.by_layer_head``): one value per cell.
"""

from __future__ import annotations

import numpy as np

from karma_probe.analyzers import bootstrap
from karma_probe.analyzers.registry import Absent, Measurement, register
from karma_probe.rundir.analysis import Record

SINK_EPSILON = 0.3  # Gu et al. (ICLR 2025) call a head a sink head above this first-token mass
TOP_PERCENT = 5  # the "barcode" statistic: share on the top ⌈5%⌉ key positions
HEADLINE_SET = "history"  # a capture without history probes: "user", else "text" (Capture.headline_set)
USER_SET = "user"  # the user's own prompts (--probes-file): per (layer, head) records like the headline set


# --------------------------------------------------------------------------- pure functions on full maps


def top_count(n_keys: int) -> int:
    """k = ⌈5% · n_keys⌉ in integer arithmetic (as the capture computes it)."""
    return (TOP_PERCENT * n_keys + 99) // 100


def sink_mass_from_pattern(P: np.ndarray) -> np.ndarray:
    """Mean over queries i≥1 of P[i, 0].  P: [..., T, T] → [...]; range [0, 1]."""
    P = np.asarray(P, dtype=np.float64)
    return P[..., 1:, 0].mean(-1)


def attn_entropy_from_pattern(P: np.ndarray) -> np.ndarray:
    """Mean over queries i≥1 of H(P[i,:]) / log(i+1).  P: [..., T, T] → [...]; range [0, 1].

    1 for uniform causal attention (row i spread evenly over its i+1 keys), 0 when every row puts
    all its mass on one key. 0·log 0 = 0.
    """
    P = np.asarray(P, dtype=np.float64)
    T = P.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log(np.where(P > 0, P, 1.0)), 0.0)
    H = -plogp.sum(-1)[..., 1:]  # [..., T-1]  rows i = 1..T-1
    return (H / np.log(np.arange(2, T + 1))).mean(-1)


def received_mass(P: np.ndarray) -> np.ndarray:
    """r_j = Σ_{i≥j} P[i, j] (column sums of a causal map).  [..., T, T] → [..., T]."""
    return np.asarray(P, dtype=np.float64).sum(-2)


def key_concentration_from_pattern(P: np.ndarray) -> np.ndarray:
    """Share of Σ_{j≥1} r_j on the top ⌈5%·(T−1)⌉ key positions j≥1.  [..., T, T] → [...]; range [0, 1].

    High when a few keys (the "barcode" columns of an attention map) receive most of the mass
    that does not go to the first token; 0 by definition when all mass goes to token 0.
    """
    r = received_mass(P)[..., 1:]  # [..., T-1]
    k = top_count(r.shape[-1])
    top = -np.sort(-r, axis=-1)[..., :k].sum(-1)
    total = r.sum(-1)
    return np.where(total > 0, top / np.where(total > 0, total, 1.0), 0.0)


def massive_ratio(h: np.ndarray) -> float:
    """max |h| / median |h| over all tokens and dims of one probe's residual stream [T, d].

    The median of an even count is the lower middle value, as ``torch.median`` (the capture) takes it.
    Range [1, ∞); ~10 for a Gaussian-like stream, in the hundreds with massive activations.
    """
    a = np.abs(np.asarray(h, dtype=np.float64)).ravel()
    median = np.partition(a, (a.size - 1) // 2)[(a.size - 1) // 2]
    return float(a.max() / max(median, np.finfo(np.float32).tiny))


def attention_sums(maps: list[np.ndarray], residuals: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The capture's stats (keys without the ``{set}.`` prefix) computed from full maps.

    ``maps``: one [L, H, n_k, n_k] causal map per probe; ``residuals``: one [L+1, n_k, d] stream per
    probe. This is the slow, obvious definition the streamed capture must equal.
    """
    L, H = maps[0].shape[:2]
    T = max(m.shape[-1] for m in maps)
    out = {"attn.first_mass_sum": np.zeros((L, H)), "attn.entropy_sum": np.zeros((L, H)),
           "attn.key_received_sum": np.zeros((L, H, T)), "attn.key_positions": np.zeros(T),
           "attn.key_conc_sum": np.zeros((L, H)), "attn.rows": np.zeros(1), "attn.probes": np.zeros(1)}
    per = {"attn.first_mass": [], "attn.entropy": [], "attn.key_conc": [], "attn.probe_rows": []}
    for P in maps:
        n = P.shape[-1]
        per["attn.first_mass"].append(sink_mass_from_pattern(P))
        per["attn.entropy"].append(attn_entropy_from_pattern(P))
        per["attn.key_conc"].append(key_concentration_from_pattern(P))
        per["attn.probe_rows"].append(n - 1)
        out["attn.first_mass_sum"] += per["attn.first_mass"][-1] * (n - 1)
        out["attn.entropy_sum"] += per["attn.entropy"][-1] * (n - 1)
        out["attn.key_received_sum"][..., :n] += received_mass(P)
        out["attn.key_positions"][:n] += 1
        out["attn.key_conc_sum"] += per["attn.key_conc"][-1]
        out["attn.rows"] += n - 1
        out["attn.probes"] += 1
    out |= {k: np.array(v, dtype=np.float64) for k, v in per.items()}
    if residuals is not None:
        ratios = np.array([[massive_ratio(h[m]) for m in range(h.shape[0])] for h in residuals])  # [N, L+1]
        out["resid.massive_sum"] = ratios.sum(0)
        out["resid.massive_max"] = ratios.max(0)
        out["resid.massive"] = ratios
    return {k: v.astype(np.float32) for k, v in out.items()}


# --------------------------------------------------------------------------- from the capture's statistics


def per_head(stats: dict[str, np.ndarray], key: str, by: str) -> np.ndarray:
    """``stats[key] / stats[by]`` as float64 [L, H] (the mean the sum was accumulated for)."""
    return stats[key].astype(np.float64) / float(stats[by].reshape(-1)[0])


def per_probe(stats: dict[str, np.ndarray], key: str) -> np.ndarray:
    """The per-probe statistic ``key`` as float64 [N, ...]; Absent for a capture that predates it."""
    if key not in stats:
        raise Absent(f"the capture has no per-probe statistics ({key}; captured before they existed): "
                     "re-run `karma-probe capture`")
    return stats[key].astype(np.float64)


def _head_records(metric: str, values: np.ndarray, name: str = HEADLINE_SET) -> list[Record]:
    return [Record(metric, float(values[l, h]), layer=l, head=h, set=name)
            for l in range(values.shape[0]) for h in range(values.shape[1])]


def _layered(inputs, name: str) -> bool:
    """Whether set ``name`` gets per-layer (and per-head) records: the headline set and the user's prompts."""
    return name in (inputs.headline_set, USER_SET)


def _probe_mean_metric(inputs, metric: str, key: str, pooled: tuple[str, str] | None = None) -> Measurement:
    """Headline = mean over probes, layers and heads of the per-probe ``key`` [N, L, H], with its
    bootstrap interval over probes; per-(layer, head) records are probe means too. ``pooled``
    (sum key, count key) adds the pooled-rows value as a ``history_pooled`` record."""
    records, headline, iv = [], float("nan"), None
    for name, stats in inputs.attention_sets():
        values = per_probe(stats, key)  # [N, L, H]
        if _layered(inputs, name):
            records += _head_records(metric, values.mean(0), name)
        if name == inputs.headline_set:
            headline = float(values.mean())
            iv = bootstrap.of_mean(values)
            if pooled:
                records.append(Record(metric, float(per_head(stats, *pooled).mean()), set=f"{name}_pooled"))
        records.append(Record(metric, float(values.mean()), set=name))
    return Measurement(headline, tuple(records), interval=iv)


@register("sink_mass", higher_is_better=False, needs=("capture",))
def sink_mass(inputs) -> Measurement:
    """First-token attention mass, probe-mean: sink_mass[l,h] = mean over probes p of
    (1/(n_p−1)) Σ_{i≥1} P_p[i,0]; headline = mean over (layer, head), with a 95 % bootstrap
    interval over probes. Every probe weighs the same; the pooled-rows version
    Σ_p Σ_{i≥1} P_p[i,0] / Σ_p (n_p−1), which weighs long probes more, is the record with
    set "history_pooled".

    Range [0, 1]; 1 = every query attends only to token 0 (an attention sink), 1/(i+1)-like
    values for diffuse attention. Records per (layer, head) on the history probes. Lower = less
    collapse. Reference: Xiao et al., "Efficient Streaming Language Models with Attention Sinks"
    (ICLR 2024); Gu et al., "When Attention Sink Emerges in Language Models" (ICLR 2025).
    """
    return _probe_mean_metric(inputs, "sink_mass", "attn.first_mass", pooled=("attn.first_mass_sum", "attn.rows"))


@register("sink_rate", higher_is_better=False, needs=("capture",))
def sink_rate(inputs) -> Measurement:
    """Share of sink heads: sink_rate = #{(l,h) : sink_mass[l,h] > ε} / (L·H), ε = 0.3, with the
    probe-mean sink_mass[l,h]; 95 % bootstrap interval over probes (the threshold is applied to
    each resample's per-head means).

    Range [0, 1]. Records per layer (share of that layer's heads) on the history probes; headline
    over all (layer, head). Lower = less collapse. Reference: Gu et al., "When Attention Sink
    Emerges in Language Models: An Empirical View" (ICLR 2025), ε = 0.3.
    """
    records, headline, iv = [], float("nan"), None
    for name, stats in inputs.attention_sets():
        first = per_probe(stats, "attn.first_mass")  # [N, L, H]
        sink = first.mean(0) > SINK_EPSILON  # [L, H]
        if name == inputs.headline_set:
            headline = float(sink.mean())
            iv = bootstrap.of_statistic(len(first), lambda idx: float((first[idx].mean(0) > SINK_EPSILON).mean()))
        if _layered(inputs, name):
            records += [Record("sink_rate", float(sink[l].mean()), layer=l, set=name) for l in range(sink.shape[0])]
        records.append(Record("sink_rate", float(sink.mean()), set=name))
    return Measurement(headline, tuple(records), interval=iv)


@register("key_concentration", higher_is_better=False, needs=("capture",))
def key_concentration(inputs) -> Measurement:
    """Barcode statistic: with r_j = Σ_{i≥j} P[i,j], share = Σ top-k_{j≥1} r_j / Σ_{j≥1} r_j,
    k = ⌈5%·(n−1)⌉, averaged over probes (per-probe key_conc, = key_conc_sum / probes); 95 %
    bootstrap interval over probes.

    Range [k/(n−1), 1] (0 if all mass is on token 0); high = a few key positions (vertical strips
    in the map) receive most attention. Records per (layer, head), headline = mean. Lower = less
    collapse. Reference: the "barcode" attention of KARMA (arXiv 2603.22779), after Xiao et al. 2024.
    """
    return _probe_mean_metric(inputs, "key_concentration", "attn.key_conc")


@register("attn_entropy", higher_is_better=True, needs=("capture",))
def attn_entropy(inputs) -> Measurement:
    """Normalized attention entropy, probe-mean: mean over probes p of
    (1/(n_p−1)) Σ_{i≥1} H(P_p[i,:]) / log(i+1); headline = mean over (layer, head), 95 % bootstrap
    interval over probes. The pooled-rows version (Σ over all rows / Σ (n−1)) is the record with
    set "history_pooled".

    Range [0, 1]; 1 = uniform causal attention, 0 = every row on one key. Records per
    (layer, head). Higher = less collapse. Reference: Zhai et al., "Stabilizing Transformer
    Training by Preventing Attention Entropy Collapse" (ICML 2023).
    """
    return _probe_mean_metric(inputs, "attn_entropy", "attn.entropy", pooled=("attn.entropy_sum", "attn.rows"))


# ----------------------------------------------------------------- the same statistics, restricted

TEXT_SET = "text"


def trained_layers(inputs, n_layers: int) -> slice:
    """The decoder layers the run's training changed: the top ``train_layers`` (all when 0). A
    reference run records the trained runs' ``train_layers``, so it is read over the same layers."""
    k = int((inputs.meta.get("train") or {}).get("train_layers") or 0)
    return slice(n_layers - k, None) if 0 < k < n_layers else slice(None)


def _restricted(inputs, metric: str, key: str, set_name: str, trained: bool) -> Measurement:
    """Mean over probes, the chosen layers and heads of the per-probe ``key`` [N, L, H] of one
    probe set, with a 95 % bootstrap interval over probes; one record with its set and layers."""
    stats = dict(inputs.attention_sets()).get(set_name)
    if stats is None:
        raise Absent(f"the capture has no {set_name!r} probes")
    values = per_probe(stats, key)  # [N, L, H]
    layers = trained_layers(inputs, values.shape[1]) if trained else slice(None)
    first = range(values.shape[1])[layers].start
    values = values[:, layers]  # [N, L', H]
    label = f"{set_name}_trained" if trained else set_name
    cells = values.mean(0)  # [L', H]: per (layer, head) records of the covered layers, absolute layer numbers
    records = [Record(metric, float(cells[l, h]), layer=first + l, head=h, set=label)
               for l in range(cells.shape[0]) for h in range(cells.shape[1])]
    return Measurement(float(values.mean()), (*records, Record(metric, float(values.mean()), set=label)),
                       interval=bootstrap.of_mean(values))


@register("sink_mass_trained", higher_is_better=False, needs=("capture",))
def sink_mass_trained(inputs) -> Measurement:
    """``sink_mass`` over the trained layers only (the top ``train_layers`` decoder layers; every
    layer for a full fine-tune), history probes, with its bootstrap interval over probes. The
    frozen layers' attention changes between runs only through their inputs, so averaging them in
    (22 of 30 layers in the top-8 regime) dilutes what training did. Range [0, 1]; formula as
    sink_mass = mean over probes p, trained layers l, heads h of (1/(n_p−1)) Σ_{i≥1} P[i,0].
    Lower = less collapse. Reference: Gu et al., "When Attention Sink Emerges" (ICLR 2025)."""
    return _restricted(inputs, "sink_mass_trained", "attn.first_mass", HEADLINE_SET, trained=True)


@register("sink_mass_text", higher_is_better=False, needs=("capture",))
def sink_mass_text(inputs) -> Measurement:
    """``sink_mass`` on the general passages (the ``text`` probes), every layer: the inputs are
    identical for every run, so a difference between runs is what training did to attention on
    plain language. Range [0, 1]; sink_mass = mean over passages, layers, heads of
    (1/(n−1)) Σ_{i≥1} P[i,0]. Lower = less collapse. Reference: Xiao et al. (ICLR 2024); Gu et al.
    (ICLR 2025), who measure sinks on such general text."""
    return _restricted(inputs, "sink_mass_text", "attn.first_mass", TEXT_SET, trained=False)


@register("key_concentration_trained", higher_is_better=False, needs=("capture",))
def key_concentration_trained(inputs) -> Measurement:
    """``key_concentration`` (the barcode statistic) over the trained layers only, history probes,
    with its bootstrap interval over probes. Range [k/(n−1), 1]; share = Σ top-k r_j / Σ_{j≥1} r_j.
    Lower = less collapse. Reference: the "barcode" attention of KARMA (arXiv 2603.22779)."""
    return _restricted(inputs, "key_concentration_trained", "attn.key_conc", HEADLINE_SET, trained=True)


@register("attn_entropy_trained", higher_is_better=True, needs=("capture",))
def attn_entropy_trained(inputs) -> Measurement:
    """``attn_entropy`` over the trained layers only, history probes, with its bootstrap interval
    over probes. Range [0, 1]; mean of H(P[i,:]) / log(i+1) over rows i≥1. Higher = less collapse.
    Reference: Zhai et al. (ICML 2023)."""
    return _restricted(inputs, "attn_entropy_trained", "attn.entropy", HEADLINE_SET, trained=True)


@register("key_concentration_text", higher_is_better=False, needs=("capture",))
def key_concentration_text(inputs) -> Measurement:
    """``key_concentration`` (the barcode statistic) on the general passages, every layer, with its
    bootstrap interval over passages: identical inputs for every run. Range [k/(n−1), 1]; share =
    Σ top-k r_j / Σ_{j≥1} r_j of the received mass r_j. Lower = less collapse. Reference: the
    "barcode" attention of KARMA (arXiv 2603.22779)."""
    return _restricted(inputs, "key_concentration_text", "attn.key_conc", TEXT_SET, trained=False)


@register("attn_entropy_text", higher_is_better=True, needs=("capture",))
def attn_entropy_text(inputs) -> Measurement:
    """``attn_entropy`` on the general passages, every layer, with its bootstrap interval over
    passages: identical inputs for every run. Range [0, 1]; mean of H(P[i,:]) / log(i+1) over rows
    i≥1. Higher = less collapse. Reference: Zhai et al. (ICML 2023)."""
    return _restricted(inputs, "attn_entropy_text", "attn.entropy", TEXT_SET, trained=False)


@register("massive_act", higher_is_better=False, needs=("capture",))
def massive_act(inputs) -> Measurement:
    """Massive activations: ratio[m] = mean over probes of max|h_m| / median|h_m| over the probe's
    tokens and dims, m = residual index (layer 0 = embeddings, layer m = output of decoder layer m−1).

    Range [1, ∞). Records per residual index on the history probes; headline = max over layers
    (massive activations live in a few layers; a mean would dilute them), with a 95 % bootstrap
    interval over probes (max over layers of each resample's means). Lower = less collapse.
    Reference: Sun et al., "Massive Activations in Large Language Models" (COLM 2024).
    """
    records, headline, iv = [], float("nan"), None
    for name, stats in inputs.residual_sets():
        ratio = stats["resid.massive_sum"].astype(np.float64) / float(stats["attn.probes"].reshape(-1)[0])  # [L+1]
        if name == inputs.headline_set:
            headline = float(ratio.max())
            if "resid.massive" in stats:  # per probe [N, L+1]; older captures: no interval
                per = per_probe(stats, "resid.massive")
                iv = bootstrap.of_statistic(len(per), lambda idx: float(per[idx].mean(0).max()))
        if _layered(inputs, name):
            records += [Record("massive_act", float(v), layer=m, set=name) for m, v in enumerate(ratio)]
        records.append(Record("massive_act", float(ratio.max()), set=name))
    return Measurement(headline, tuple(records), interval=iv)


# --------------------------------------------------------------------------- Gu et al.'s own sink metric

GU_TOKENS = 64  # eval_sink_open_source.py line 85: token_length = 64
GU_BATCH = 8


def gu_importance(P: np.ndarray) -> np.ndarray:
    """Gu et al.'s importance score of every key, exactly as their code (sail-sg/Attention-Sink,
    eval_sink_open_source.py lines 46-47) computes it from full maps P [..., T, T]:
    α_j = Σ_i P[i, j] / (T − j), the mean attention key j receives from the T − j queries i ≥ j
    that can see it (query j itself included). → [..., T]."""
    P = np.asarray(P, dtype=np.float64)
    T = P.shape[-1]
    return (P / np.arange(T, 0, -1, dtype=np.float64)).sum(-2)


def gu_sink_rate_from_pattern(P: np.ndarray, epsilon: float = SINK_EPSILON) -> float:
    """Gu et al.'s Sink_1^ε from full maps P [samples, layers, heads, T, T]: the share of
    (sample, layer, head) whose first-token importance α_0 exceeds ε (their ``metric1[0] / 100``;
    lines 48-49; ε = 0.3 at line 92)."""
    return float((gu_importance(P)[..., 0] > epsilon).mean())


def gu_first_importance(first_mass: np.ndarray, n: int) -> np.ndarray:
    """α_0 of a probe of n tokens from the capture's per-probe first_mass (mean of P[i, 0] over
    queries 1 ≤ i < n): α_0 = (P[0, 0] + Σ_{i≥1} P[i, 0]) / n = (1 + (n − 1)·first_mass) / n."""
    return (1.0 + (n - 1) * np.asarray(first_mass, dtype=np.float64)) / n


def gu_windows(tokenizer, passages: list[str], n_tokens: int = GU_TOKENS) -> list[list[int]]:
    """One text per passage, as long as Gu et al. require (their line 20 asserts ≥ 64 tokens):
    the passage followed by the next ones in file order (wrapping round, joined by a blank line as
    in the file) until it has ``n_tokens`` tokens, cut to its first ``n_tokens`` (their lines 18-21:
    the tokenizer's own special tokens included, as ``tokenizer(prompt)`` adds them)."""
    out = []
    for k in range(len(passages)):
        text, m = passages[k], k
        ids = tokenizer(text)["input_ids"]
        while len(ids) < n_tokens:
            m += 1
            if m - k >= len(passages):
                raise ValueError(f"the passages hold fewer than {n_tokens} tokens together")
            text += "\n\n" + passages[m % len(passages)]
            ids = tokenizer(text)["input_ids"]
        out.append(list(ids[:n_tokens]))
    return out


def gu_first_mass(backbone, windows: list[list[int]]) -> np.ndarray:
    """Per-window mean of P[i, 0] over queries 1 ≤ i < T, [N, L, H], through the capture library
    (the same backend and reducers as ``capture``; every window has exactly T tokens: no padding)."""
    import torch

    from karma_probe.capture.backends import make_backend
    from karma_probe.capture.session import ProbeCollector

    c = backbone.config
    T = len(windows[0])
    sink = ProbeCollector(c.num_hidden_layers, c.num_attention_heads, c.hidden_size, T, keep_marker=False)
    backend = make_backend("torch", backbone, None)
    device = next(backbone.parameters()).device
    try:
        for s in range(0, len(windows), GU_BATCH):
            ids = torch.tensor(windows[s: s + GU_BATCH], dtype=torch.long)  # (B, T)
            sink.begin_batch(torch.full((len(ids),), T), [None] * len(ids))
            backend.run(ids.to(device), torch.ones_like(ids).to(device), sink)
            sink.end_batch()
    finally:
        backend.close()
    return sink.state("gu")["gu.attn.first_mass"].double().numpy()


@register("sink_rate_gu", higher_is_better=False, needs=("model",))
def sink_rate_gu(inputs) -> Measurement:
    """Gu et al.'s attention-sink metric Sink_1^ε, exactly as their code computes it
    (github.com/sail-sg/Attention-Sink, eval_sink_open_source.py): each text cut to its first
    T = 64 tokens (lines 18-21, 85), the full attention maps of every layer and head (lines 22-37),
    the first token's importance α_0 = (1/T) Σ_{i<T} P[i, 0] (lines 46-47: the mean attention the
    key receives from the queries that see it, query 0 included), and the share of
    (text, layer, head) with α_0 > ε = 0.3 (lines 48-49, 92) — the threshold is applied per text,
    then averaged (our ``sink_rate`` thresholds the probe-mean instead).

    On the general passages (resources/passages.txt): they are 32-55 tokens long and Gu et al.
    assert ≥ 64, so each text is a passage followed by the next ones until 64 tokens
    (:func:`gu_windows`); tokenized as they do (``tokenizer(text)``, the tokenizer's own special
    tokens; SmolLM2's adds none). α_0 comes from the capture library's exact streamed first-token
    mass (:func:`gu_first_importance`; equal to :func:`gu_sink_rate_from_pattern` on full maps,
    tests/test_analyzers_attention.py). Gu et al. report ``100 ×`` this value (a percentage).

    Range [0, 1]. Records per layer (share of its (text, head) pairs). 95 % bootstrap interval over
    the texts. Lower = less collapse. Reference: Gu et al., "When Attention Sink Emerges in
    Language Models: An Empirical View" (ICLR 2025).
    """
    from karma_probe.capture.probes import general_passages

    model = inputs.model
    windows = gu_windows(model.tokenizer, general_passages())
    alpha0 = gu_first_importance(gu_first_mass(model.backbone, windows), GU_TOKENS)  # [N, L, H]
    sink = alpha0 > SINK_EPSILON
    iv = bootstrap.of_statistic(len(sink), lambda idx: float(sink[idx].mean()))
    records = [Record("sink_rate_gu", float(sink[:, l].mean()), layer=l, set="text_gu64") for l in range(sink.shape[1])]
    records.append(Record("sink_rate_gu", float(sink.mean()), set="text_gu64"))
    return Measurement(float(sink.mean()), tuple(records), interval=iv)
