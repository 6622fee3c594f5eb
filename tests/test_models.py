"""Backbones: the real SmolLM2 still knows things, tiny is tiny, paths load, bad paths fail clearly."""

import json
import subprocess
import sys

import pytest
import torch

from karma_probe.cli import main
from karma_probe.core.errors import BadInput
from karma_probe.model.backbones import TINY_VOCAB, load_backbone, load_tokenizer, model_info


@pytest.mark.smollm2
def test_smollm2_knows_paris():
    model, tok = load_backbone("smollm2-135m")
    info = model_info("smollm2-135m", model)
    assert (info.layers, info.width, info.heads, info.kv_heads) == (30, 576, 9, 3)
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_tiny_is_random_init_llama_with_cut_smollm2_vocabulary(tmp_path):
    model, tok = load_backbone("tiny", seed=0)
    info = model_info("tiny", model)
    assert 2 <= info.layers <= 4 and 64 <= info.width <= 128
    assert info.vocab == len(tok) == TINY_VOCAB
    again, _ = load_backbone("tiny", seed=0)
    assert torch.equal(model.model.embed_tokens.weight, again.model.embed_tokens.weight)
    # any local HF directory loads by path
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, _ = load_backbone(str(tmp_path / "m"))
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_tiny_tokenizer_is_smollm2_bpe_cut_to_its_first_tokens():
    """Every tiny token is the SmolLM2 token with the same id; texts round-trip; specials stay."""
    tiny, full = load_tokenizer("tiny"), load_tokenizer("smollm2-135m")
    texts = ["Toy Story (1995) | Animation, Children's, Comedy", "A user watched these movies, oldest first:\n- ",
             "Amélie (2001) — naïve façade, 東京物語 🎬", "\nNext:"]
    full_vocab = full.get_vocab()
    for text in texts:
        ids = tiny(text, add_special_tokens=False)["input_ids"]
        assert max(ids) < TINY_VOCAB and tiny.decode(ids) == text
        for piece, i in zip(tiny.convert_ids_to_tokens(ids), ids):
            assert full_vocab[piece] == i
    # a text made of frequent tokens (all SmolLM2 ids below the cut) tokenizes exactly as in SmolLM2
    common = " the capital of the world is"
    assert max(full(common)["input_ids"]) < TINY_VOCAB
    assert tiny(common)["input_ids"] == full(common)["input_ids"]
    assert (tiny.eos_token_id, tiny.pad_token_id) == (full.eos_token_id, full.pad_token_id)
    assert len(tiny(texts[0])["input_ids"]) > len(full(texts[0])["input_ids"])  # fewer merges, more pieces


def test_unknown_model_is_bad_input(tmp_path, capsys):
    with pytest.raises(BadInput, match="not a known model"):
        load_backbone(str(tmp_path / "nope"))
    # in process: a subprocess would spend its time importing torch (the end-to-end run is test_cli_model_info_tiny)
    assert main(["model", "info", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "karma-probe model: error:" in err, err


@pytest.mark.slow
def test_cli_model_info_tiny():
    r = subprocess.run([sys.executable, "-m", "karma_probe", "model", "info", "--model", "tiny"],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["layers"] == 2
