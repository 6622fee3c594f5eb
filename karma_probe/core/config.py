"""Training configuration: one frozen dataclass, two presets, four conditions.

The conditions differ **only** in ``(lambda_gen, lambda_rec)``: action ``(0, 0)``, gen ``(w, 0)``,
rec ``(0, w)``, karma ``(w, w)`` with ``w = reg_weight``. Everything else is shared, so a
difference between runs can only come from the regularizers.

Two input interfaces (``interface``), one retriever:

- ``continuous`` (default of both presets; the KARMA paper's industrial design, as in HLLM): each
  history item enters the LLM as ONE input embedding (projected content vector + ID vector, see
  catalogue.py); the interest embedding after every position predicts the next item, scored
  against the whole catalogue with a softmax (``act_loss="softmax"``).
- ``text``: the history rendered as item titles, then a fixed interest marker; the item tower
  encodes item texts, so ``L_act`` is InfoNCE over in-batch (+ sampled) negatives (``"inbatch"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from karma_probe.core.errors import BadInput

CONDITIONS = {"action": (0.0, 0.0), "gen": (1.0, 0.0), "rec": (0.0, 1.0), "karma": (1.0, 1.0)}
INTERFACES = ("continuous", "text")
FIRST_TOKENS = ("bos", "none")  # what position 0 of a continuous history is (prompts.history_prefix_ids)
ACT_LOSSES = ("softmax", "inbatch")  # full-catalogue softmax | in-batch (+ sampled negatives) InfoNCE
PRECISIONS = ("fp32", "bf16")  # bf16: autocast of the training forward; weights stay fp32


@dataclass(frozen=True)
class TrainConfig:
    model: str = "tiny"  # backbone: smollm2-135m | tiny | a local HF directory
    dataset: str = "ml-100k"  # ml-100k | synthetic[:SEED] | a directory of RecBole atomic files
    condition: str = "action"
    interface: str = "continuous"  # continuous | text (module docstring)
    act_loss: str = ""  # softmax | inbatch; "" resolves to softmax (continuous) or inbatch (text)
    reg_weight: float = 1.0  # w in the table above
    # Balanced form: each step, a regularizer's weight is min(λ, ρ·‖g_act‖/‖g_reg‖), the gradient
    # norms taken on the shared parameters, so its gradient there is at most ρ × the action loss's
    # (objectives.balance). 0 = the plain λ form.
    balance_rho: float = 0.0
    grad_norm_every: int = 50  # log per-loss gradient norms and cosines every N steps (every step when balancing)
    lambda_gen: float = 0.0  # resolved from condition and reg_weight (see resolve)
    lambda_rec: float = 0.0
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3  # backbone
    head_lr: float = 3e-3  # interest/item heads, reconstruction adapter, temperature
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_history: int = 6  # newest history items the model sees (continuous: tokens; text: prompt lines)
    max_target_tokens: int = 24  # item text tokens (item tower input, L_gen / L_rec targets)
    embed_dim: int = 64
    temperature: float = 0.07
    learn_temperature: bool = True
    sampled_negatives: int = 0  # extra random catalogue items per batch for L_act
    soft_prompts: int = 4  # k soft-prompt vectors for L_rec
    reg_positions: int = 1  # continuous: history positions per sequence sampled for L_gen / L_rec
    precision: str = "fp32"  # fp32 | bf16 (autocast of the training forward)
    train_layers: int = 0  # 0: train everything; k > 0: only the top k decoder layers (+ heads)
    freeze_embeddings: bool = False  # keep the token embedding (tied to the LM head) at its initialization
    # continuous interface: "bos" starts every history with the tokenizer's BOS and "User history:",
    # so position 0 is a real first token where the literature measures sinks; "none" (runs
    # before v3) starts with the oldest item
    first_token: str = "bos"
    checkpoint_every: int = 100
    keep_checkpoints: bool = True  # keep intermediate checkpoints to follow collapse over training
    log_every: int = 10
    eval_users: int = 0  # 0: evaluate every user; n > 0: a seeded subset (faster, for big models)
    eval_batch_size: int = 64
    seed: int = 0

    def resolve(self) -> "TrainConfig":
        """Fill the λs from the condition; explicit λs given with ``--set`` win only if non-zero."""
        if self.condition not in CONDITIONS:
            raise BadInput(f"unknown condition {self.condition!r}; known: {', '.join(CONDITIONS)}")
        if self.interface not in INTERFACES:
            raise BadInput(f"unknown interface {self.interface!r}; known: {', '.join(INTERFACES)}")
        act_loss = self.act_loss or ("softmax" if self.interface == "continuous" else "inbatch")
        if act_loss not in ACT_LOSSES:
            raise BadInput(f"unknown act_loss {act_loss!r}; known: {', '.join(ACT_LOSSES)}")
        if act_loss == "softmax" and self.interface == "text":
            raise BadInput("act_loss=softmax needs interface=continuous (the text item tower would encode "
                           "the whole catalogue every step); use act_loss=inbatch")
        if self.first_token not in FIRST_TOKENS:
            raise BadInput(f"unknown first_token {self.first_token!r}; known: {', '.join(FIRST_TOKENS)}")
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        g, r = CONDITIONS[self.condition]
        validate(self)
        return dataclasses.replace(self, act_loss=act_loss, lambda_gen=self.lambda_gen or g * self.reg_weight,
                                   lambda_rec=self.lambda_rec or r * self.reg_weight)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        # runs written before the continuous interface existed were text runs; before v3 a history
        # started with its oldest item
        d = {"interface": "text", "first_token": "none"} | d
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS = {
    # Random-init 2-layer Llama, SmolLM2's tokenizer cut to 4,096 tokens: the test, CI and quick-start backbone.
    "tiny": TrainConfig(model="tiny", steps=500, batch_size=32, lr=2e-3, head_lr=3e-3, max_history=50,
                        max_target_tokens=20, embed_dim=64, checkpoint_every=100, eval_batch_size=128),
    # The real SmolLM2-135M on a 2-core CPU: the top 8 of 30 layers, bf16 autocast (benchmarks/README.md).
    "smollm2": TrainConfig(model="smollm2-135m", steps=500, batch_size=32, lr=2e-4, head_lr=2e-3,
                           max_history=50, max_target_tokens=20, embed_dim=128, train_layers=8,
                           precision="bf16", checkpoint_every=100, warmup_steps=20,
                           eval_batch_size=64),
}
# Full fine-tune, the regime closest to the paper's: every decoder layer and the final norm train.
# The token embedding, tied to the LM head, stays frozen: the action loss reaches it only through
# the few first-token rows, so training it would make the conditions differ in which parameters
# learn (the regularizers would retrain the whole vocabulary, action-only would not), and lm_ppl /
# fact_acc then measure what the decoder layers forgot, as in the top-8 regime.
PRESETS["smollm2-full"] = dataclasses.replace(PRESETS["smollm2"], train_layers=0, freeze_embeddings=True)


def reference_config(model: str) -> "TrainConfig | None":
    """The config of the first preset that trains backbone ``model`` (tiny; smollm2-135m: ``smollm2``
    before ``smollm2-full``, which differ only in the layers they train), else None.

    A reference run is then built like the trained runs' inputs: the same interface, first token and
    number of history items (a continuous preset's reference is its model at step 0), so it differs
    from them only in training.
    """
    found = [name for name, p in PRESETS.items() if p.model == model]
    return make_config(found[0], "action") if found else None


def make_config(preset: str, condition: str, overrides: dict | None = None, **fields) -> TrainConfig:
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(PRESETS[preset], condition=condition, **fields)
    if overrides:
        cfg = dataclasses.replace(cfg, **coerce_overrides(overrides))
    return cfg.resolve()


def coerce_overrides(overrides: dict) -> dict:
    """``--set key=value`` strings → typed values, with a clear message for unknown keys."""
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = {}
    for key, raw in overrides.items():
        if key not in types:
            raise BadInput(f"unknown config key {key!r}; known: {', '.join(types)}")
        typ = types[key]
        try:
            if typ == "bool":
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                out[key] = raw.lower() in ("1", "true", "yes")
            elif typ == "int":
                out[key] = int(raw)
            elif typ == "float":
                out[key] = float(raw)
            else:
                out[key] = raw
        except ValueError:
            raise BadInput(f"--set {key}={raw}: expected a {typ}") from None
    return out


def parse_sets(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"--set {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------- validation

# (field, predicate, what it must be): checked when a config is resolved, i.e. before a run
# directory is touched (``resolve`` calls it), so ``--set lr=-1`` or ``--steps 0`` is one line and exit 2, not a run
# that trains to nonsense or an IndexError minutes later. NaN fails every predicate.
RULES = (
    ("steps", lambda v: v >= 1, ">= 1"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("lr", lambda v: v > 0, "> 0"),
    ("head_lr", lambda v: v > 0, "> 0"),
    ("warmup_steps", lambda v: v >= 0, ">= 0"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("grad_clip", lambda v: v >= 0, ">= 0 (0 turns clipping off)"),
    ("reg_weight", lambda v: v >= 0, ">= 0"),
    ("balance_rho", lambda v: v >= 0, ">= 0 (0 turns balancing off)"),
    ("grad_norm_every", lambda v: v >= 0, ">= 0 (0 never logs gradient norms unless balancing)"),
    ("lambda_gen", lambda v: v >= 0, ">= 0"),
    ("lambda_rec", lambda v: v >= 0, ">= 0"),
    ("max_history", lambda v: v >= 1, ">= 1"),
    ("max_target_tokens", lambda v: v >= 2, ">= 2 (L_gen predicts each token from the one before)"),
    ("embed_dim", lambda v: v >= 1, ">= 1"),
    ("temperature", lambda v: v > 0, "> 0"),
    ("sampled_negatives", lambda v: v >= 0, ">= 0"),
    ("soft_prompts", lambda v: v >= 1, ">= 1"),
    ("train_layers", lambda v: v >= 0, ">= 0 (0 trains every layer)"),
    ("checkpoint_every", lambda v: v >= 1, ">= 1"),
    ("log_every", lambda v: v >= 1, ">= 1"),
    ("eval_users", lambda v: v >= 0, ">= 0 (0 evaluates every user)"),
    ("eval_batch_size", lambda v: v >= 1, ">= 1"),
    ("reg_positions", lambda v: v >= 1, ">= 1"),
)


def validate(cfg: TrainConfig) -> None:
    """Raise BadInput naming the first field outside its range (fields not in RULES are not checked)."""
    import math
    for name, ok, what in RULES:
        value = getattr(cfg, name, None)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInput(f"{name} must be a finite number, got {value!r}")
        try:
            good = bool(ok(value))
        except TypeError:  # a string where a number belongs (e.g. from a hand-edited config.json)
            good = False
        if not good:
            raise BadInput(f"{name} must be {what}, got {value!r}")
