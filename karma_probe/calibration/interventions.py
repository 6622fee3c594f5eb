"""The planted collapses: one intervention per family, each at a dose α of a natural scale.

Every intervention changes the **model or its inputs**, never an analyzer. Those that act on the
model are forward hooks registered through :func:`karma_probe.capture.hooks.hooked` (so they are
always removed, also when a forward raises) on decoder layers and ``k_proj`` modules only: they work
whatever the capture backend does inside the attention module. Those that act on the inputs of
the geometry and decodability analyzers transform the captured embeddings.

    sinks        k_0 ← (1 + α·c)·k_0, the first token's key, every layer   (k_proj output, c = KEY_GAIN)
    massive      h_0 ← h_0 + α·M·v after the first decoder layer       (position 0 of every probe)
                 M = the model's own largest |residual activation| on the undosed probes, v the unit
                 direction of the residual vector that holds it (the model's own massive activation)
    barcodes     k_j ← (1 + α·c)·k_j at one key position j ≥ 1, every layer   (k_proj output, c = KEY_GAIN)

The sink is planted in the first token's key, where a BOS sink lives: its logits q_i·k_0 grow with
the key's norm, so every query that already attends to it attends more. The massive-activation
vector was the sink control before the histories began with BOS; on SmolLM2, which already sinks
on BOS, it lowers first-token mass instead (README "Calibration"), so it is its own family, read
by massive_act.
    geometry     e ← ‖e‖·normalize((1−a)·ê + a·μ̂),  a = min(α, 1),  μ̂ = the set's mean direction
    decodability e_i ← e_σ(i) for a fraction a = min(α, 1) of the probes (σ a seeded derangement)
    knowledge    W ← W + α·std(W)·N(0, 1) on every weight tensor of the trained decoder layers (seeded)

α = 0 changes nothing, bit for bit: the hooks add 0·v or scale by exactly 1, the noise is 0·N,
and the two embedding transforms return their input unchanged (renormalizing would round).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from karma_probe.capture import hooks as H

KEY_GAIN = 1.0  # sinks, barcodes: α = 1 doubles the key's norm, α = 2 triples it
SINK_POSITION = 0  # sinks: the first token's key (BOS where the model has one)
BARCODE_POSITION = 1  # barcodes: the key position raised (the first one every query i ≥ 1 can see, after the sink)
DERANGEMENT_SEED = 1  # decodability: another seed than the analyzers' own null (decodability.SHUFFLE_SEED = 0)
NOISE_SEED = 0


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


# --------------------------------------------------------------------------- massive activations


@dataclass(frozen=True)
class Peak:
    """The model's largest residual activation on the undosed probes: |h| = ``value`` at residual
    index ``layer + 1`` (output of decoder layer ``layer``), feature ``dim``; ``vector`` is the whole
    residual vector of the token that holds it (d,)."""

    value: float
    layer: int
    dim: int
    vector: torch.Tensor

    def to_json(self) -> dict:
        return {"value": self.value, "layer": self.layer, "dim": self.dim}


class PeakRecorder:
    """Forward hooks that keep the largest |h| over real tokens of every decoder layer's output."""

    def __init__(self, model):
        self.model = model
        self.peak: Peak | None = None
        self._mask = None

    def registrations(self) -> list:
        def take_mask(module, args, kwargs):
            self._mask = kwargs.get("attention_mask")  # (B, T) 1 = real token (right padding)

        regs = [(H.decoder(self.model), "forward_pre", take_mask)]
        for layer, block in enumerate(H.decoder_layers(self.model)):
            regs.append((block, "forward", lambda m, a, kw, out, layer=layer: self._see(layer, _first(out))))
        return regs

    @torch.no_grad()
    def _see(self, layer: int, h: torch.Tensor) -> None:
        a = h.detach().abs().float()  # (B, T, d)
        if self._mask is not None and self._mask.dim() == 2:
            a = a * self._mask[..., None].to(a.dtype)
        flat = int(a.argmax())
        value = float(a.flatten()[flat])
        if self.peak is None or value > self.peak.value:
            b, t, k = np.unravel_index(flat, tuple(a.shape))
            self.peak = Peak(value, layer, int(k), h[b, t].detach().float().cpu().clone())

    @contextmanager
    def recording(self):
        with H.hooked(self.registrations()):
            yield self


MASSIVE_LAYER = 0  # massive: the vector is added after the first decoder layer


def massive_layer(n_layers: int, layer: int | None = None) -> int:
    """The early layer after which the sink vector is added: ``layer``, else the first decoder layer
    (before a trained model builds its own massive activation: Sun et al. see it appear abruptly
    after the first few layers; SmolLM2's grows to its peak by layer 11). Added after a later layer,
    the planted vector competes with the model's own one as it forms: on SmolLM2, after layer 3,
    sink_mass rose by only +0.011 per unit dose (README, "Calibration"; measured before the
    histories began with BOS, when this vector was the sink control)."""
    if layer is None:
        return MASSIVE_LAYER
    if not 0 <= layer < n_layers:
        from karma_probe.core.errors import BadInput

        raise BadInput(f"--massive-layer must be in 0..{n_layers - 1} for this model, got {layer}")
    return layer


def massive_vector(peak: Peak) -> torch.Tensor:
    """α = 1's vector: M·v̂ — the model's own massive-activation vector (the whole residual vector
    of the token holding its largest |h|; in SmolLM2 99 % of its norm sits in one feature, as Sun
    et al. describe massive activations), scaled to that largest |h|, M."""
    v = peak.vector
    return peak.value * v / v.norm().clamp_min(torch.finfo(v.dtype).tiny)


@contextmanager
def planted_massive(model, alpha: float, vector: torch.Tensor, layer: int):
    """Within the block, every forward adds ``alpha * vector`` to position 0 of decoder layer
    ``layer``'s output (the residual stream there)."""
    def add(module, args, kwargs, output):
        h = _first(output)
        h = h.clone()
        h[:, 0] = h[:, 0] + alpha * vector.to(h.device, h.dtype)
        return _replace_first(output, h)

    with H.hooked([(H.decoder_layers(model)[layer], "forward", add)]):
        yield


# --------------------------------------------------------------------------- sinks and barcodes: one key scaled


@contextmanager
def planted_key(model, alpha: float, position: int, gain: float = KEY_GAIN):
    """Within the block, every layer's key at ``position`` is scaled by (1 + α·gain) (k_proj output,
    before RoPE, which is a rotation: the rotated key's norm scales the same). Only full-sequence
    forwards (T > position) are touched. ``position`` 0 plants a sink (:data:`SINK_POSITION`),
    a later one a barcode strip (:data:`BARCODE_POSITION`)."""
    factor = 1.0 + alpha * gain

    def scale(module, args, kwargs, output):
        if output.shape[1] <= position:
            return output
        k = output.clone()  # (B, T, Hkv·hs)
        k[:, position] = k[:, position] * factor
        return k

    with H.hooked([(k, "forward", scale) for k in key_projections(model)]):
        yield


def key_projections(model) -> list:
    """Each decoder layer's key projection (``k_proj``), in layer order: the sink and barcode
    interventions scale one position's key there. A model with fused query/key/value projections (GPT-2, Phi3)
    has none to scale: BadInput, one line."""
    from karma_probe.core.errors import BadInput

    out = []
    for layer in H.decoder_layers(model):
        found = [m for name, m in layer.named_modules() if name.endswith("k_proj")]
        if len(found) != 1:
            raise BadInput(f"{type(model).__name__}: the sink and barcode interventions scale a layer's k_proj output, "
                           "and this architecture has no separate key projection (fused q/k/v); calibrate the other families")
        out.append(found[0])
    return out


# --------------------------------------------------------------------------- geometry and decodability


def effective(alpha: float) -> float:
    """The dose of the two embedding transforms, clipped to 1 (there is nothing beyond "all")."""
    return min(float(alpha), 1.0)


def pull_to_mean(X: np.ndarray, alpha: float) -> np.ndarray:
    """e ← ‖e‖·normalize((1−a)·ê + a·μ̂), a = min(α, 1), μ̂ = normalize(mean ê): each row pulled
    toward the set's mean direction, its norm kept (a unit embedding stays unit). a = 1 makes all
    rows parallel. α = 0 returns ``X`` itself."""
    a = effective(alpha)
    if a == 0:
        return X
    X64 = np.asarray(X, dtype=np.float64)
    norm = np.linalg.norm(X64, axis=-1, keepdims=True)
    unit = X64 / np.where(norm > 0, norm, 1.0)
    mean = unit.mean(0)
    mean = mean / max(np.linalg.norm(mean), np.finfo(np.float64).tiny)
    mixed = (1 - a) * unit + a * mean
    mixed /= np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), np.finfo(np.float64).tiny)
    return (mixed * norm).astype(np.asarray(X).dtype)


def swap_order(n: int, seed: int = DERANGEMENT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(order, donor): which probes lose their embedding first (a seeded permutation) and whose
    embedding each gets (a seeded derangement: always another probe's)."""
    from karma_probe.analyzers.decodability import derangement

    rng = np.random.default_rng([seed, n])
    return rng.permutation(n), derangement(n, seed)


def swap_embeddings(X: np.ndarray, alpha: float, seed: int = DERANGEMENT_SEED) -> np.ndarray:
    """Replace the embeddings of the first round(a·n) probes of a seeded order by another probe's,
    a = min(α, 1). The replaced sets are nested (a larger dose replaces a superset), so the doses
    are one planted curve, not independent draws. α = 0 returns ``X`` itself."""
    a = effective(alpha)
    if a == 0:
        return X
    n = len(X)
    order, donor = swap_order(n, seed)
    out = np.array(X, copy=True)
    chosen = order[: int(round(a * n))]
    out[chosen] = np.asarray(X)[donor[chosen]]
    return out


# --------------------------------------------------------------------------- knowledge


def trained_layers(n_layers: int, train_layers: int, condition: str | None) -> list[int]:
    """The decoder layers training changed: the top ``train_layers`` (TrainConfig.train_layers > 0),
    all of them for ``train_layers`` = 0 and for an untouched (``base``) model."""
    if condition == "base" or not train_layers or train_layers >= n_layers:
        return list(range(n_layers))
    return list(range(n_layers - train_layers, n_layers))


@contextmanager
def weight_noise(model, alpha: float, layers: list[int], seed: int = NOISE_SEED):
    """Within the block, every parameter of the given decoder layers is W + α·std(W)·N(0, 1),
    the noise drawn from a generator seeded by (seed, layer, parameter index), so a dose is the same
    draw scaled. The weights are restored exactly (copied back) when the block ends."""
    blocks = H.decoder_layers(model)
    saved = []
    try:
        with torch.no_grad():
            for layer in layers:
                for p_index, p in enumerate(blocks[layer].parameters()):
                    saved.append((p, p.detach().clone()))
                    gen = torch.Generator().manual_seed(seed * 1_000_003 + layer * 1_009 + p_index)
                    noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                    std = p.detach().float().std() if p.numel() > 1 else p.detach().float().abs().mean()
                    p.add_((alpha * std * noise).to(p.dtype, copy=False).to(p.device))
        yield
    finally:
        with torch.no_grad():
            for p, original in saved:
                p.copy_(original)
