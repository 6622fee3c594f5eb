"""Tiny random models of two architectures, saved as a user would have them (save_pretrained),
with a LoRA adapter and a prompts file: the inputs of "your own model" tests.

The tokenizer is tiny's (SmolLM2's BPE cut to 4,096 tokens, cached: models.tiny_tokenizer_dir),
saved beside each model, so every directory loads on its own with AutoModel / AutoTokenizer.
"""

from __future__ import annotations

from pathlib import Path

PROMPTS = ["The capital of France is Paris, and its river is the Seine.",
           "",
           "Water boils at one hundred degrees Celsius at sea level.",
           "A cat sat on the mat and looked at the moon for a long time.",
           "My favourite film is a quiet drama about a family by the sea.",
           "Photosynthesis turns light, water and carbon dioxide into sugar."]


def save_own_models(root: Path) -> dict[str, Path]:
    """``base`` (Llama), ``tuned`` (Qwen2), ``lora`` (a LoRA adapter on base, non-zero so it changes
    the model), ``prompts`` (a plain-text prompts file with a blank line) under ``root``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from karma_probe.model.backbones import tiny_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir())
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    shape = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=pad)
    paths = {name: root / name for name in ("base", "tuned", "lora")}
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**shape)).save_pretrained(paths["base"])
    tok.save_pretrained(paths["base"])
    torch.manual_seed(1)
    Qwen2ForCausalLM(Qwen2Config(**shape)).save_pretrained(paths["tuned"])
    tok.save_pretrained(paths["tuned"])
    torch.manual_seed(2)
    lora = get_peft_model(LlamaForCausalLM.from_pretrained(paths["base"]),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(paths["lora"])
    paths["prompts"] = root / "prompts.txt"
    paths["prompts"].write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return paths
