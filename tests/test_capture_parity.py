"""Capture through transformers' attention interface = the model's own eager attention, any architecture.

For each architecture a tiny random model (2 layers, width 32-64, vocabulary 128) is built in code,
saved with ``save_pretrained`` and loaded back twice: once as the capture sees it (SDPA where the
architecture has it) and once with eager attention as the reference. On one right-padded batch of
two lengths:

- per (layer, head) first-token mass and normalized row entropy of each probe, and the received mass
  per key position (per query row), equal those computed from HF's eager ``output_attentions`` to
  1e-6 (float32);
- the model's logits with the capture on equal its plain logits (SDPA, or eager where the
  architecture has no SDPA) to 1e-5 on the real tokens: the capture returns the layer's output.

Weights are drawn wider than the configs' defaults (``initializer_range``) so attention is far from
uniform and soft-capping bites.
"""

import math

import pytest
import torch
import transformers as tf

from karma_probe.capture.attention import NAME, capturing
from karma_probe.capture.backends import TorchBackend
from karma_probe.capture.session import ProbeCollector
from karma_probe.core.errors import BadInput

LENGTHS = (29, 18)  # right-padded batch of two lengths
CHUNK = 7  # does not divide either length: rows cross chunk boundaries
WINDOW = 8  # sliding windows shorter than the probes
VOCAB = 128
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.25, pad_token_id=0,
              bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
MOE = dict(num_local_experts=4, num_experts_per_tok=2)

# architecture → (config class, model class, config overrides)
ARCHS = {
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, {}),
    "mistral-window": (tf.MistralConfig, tf.MistralForCausalLM, dict(sliding_window=WINDOW)),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(attention_bias=True)),
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(head_dim=16)),
    "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, dict(head_dim=8)),
    "gemma2-softcap-windows": (tf.Gemma2Config, tf.Gemma2ForCausalLM,
                               dict(head_dim=8, sliding_window=WINDOW, attn_logit_softcapping=1.5,
                                    query_pre_attn_scalar=8, layer_types=["sliding_attention", "full_attention"])),
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
               dict(head_dim=8, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"])),
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, {}),
    "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM, {}),
    "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel,
             dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB, initializer_range=0.25)),
    "gpt-neox": (tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM, {}),
    "mixtral-moe": (tf.MixtralConfig, tf.MixtralForCausalLM, MOE),
    "gpt-oss-moe-sinks": (tf.GptOssConfig, tf.GptOssForCausalLM,
                          dict(MOE, head_dim=8, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"])),
}


def build(arch, tmp_path):
    """The tiny model, saved and reloaded: (capture model, eager reference)."""
    config_cls, model_cls, over = ARCHS[arch]
    kw = over if arch == "gpt2" else {**COMMON, **over}
    torch.manual_seed(0)
    model_cls(config_cls(**kw)).save_pretrained(tmp_path)
    eager = model_cls.from_pretrained(tmp_path, attn_implementation="eager", dtype=torch.float32).eval()
    try:
        plain = model_cls.from_pretrained(tmp_path, attn_implementation="sdpa", dtype=torch.float32).eval()
    except ValueError:  # no SDPA for this architecture (soft-capping, sink logits): eager is its plain forward
        plain = model_cls.from_pretrained(tmp_path, attn_implementation="eager", dtype=torch.float32).eval()
    return plain, eager


def batch():
    g = torch.Generator().manual_seed(1)
    T = max(LENGTHS)
    ids = torch.randint(3, VOCAB, (len(LENGTHS), T), generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def capture(backend, ids, mask):
    """The capture's attention statistics of one batch (``AttentionReducer.state()`` keys)."""
    c = backend.model.config
    sink = ProbeCollector(c.num_hidden_layers, c.num_attention_heads, c.hidden_size, ids.shape[1], keep_marker=False)
    sink.begin_batch(mask.sum(1), [None] * len(ids))
    backend.run(ids, mask, sink)
    sink.end_batch()
    return sink.attn.state()


def eager_stats(attentions, lengths):
    """First-token mass and entropy per (probe, layer, head), received mass per (layer, head, key), in float64."""
    L, H = len(attentions), attentions[0].shape[1]
    first = torch.zeros(len(lengths), L, H, dtype=torch.float64)
    ent = torch.zeros(len(lengths), L, H, dtype=torch.float64)
    received = torch.zeros(L, H, max(lengths), dtype=torch.float64)
    for layer, A in enumerate(attentions):
        for b, n in enumerate(lengths):
            P = A[b, :, :n, :n].double()  # (H, n, n)
            norm = torch.log(torch.arange(2, n + 1, dtype=torch.float64))  # log(i + 1), i = 1..n-1
            first[b, layer] = P[:, 1:, 0].mean(-1)
            ent[b, layer] = (-torch.special.xlogy(P[:, 1:], P[:, 1:]).sum(-1) / norm).mean(-1)
            received[layer, :, :n] += P.sum(1)
    return first, ent, received


@pytest.mark.parametrize("arch", list(ARCHS))
def test_capture_equals_eager_attention_and_keeps_logits(arch, tmp_path):
    model, eager = build(arch, tmp_path)
    ids, mask = batch()
    lengths = list(LENGTHS)
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
        plain = model(input_ids=ids, attention_mask=mask).logits
    c = model.config
    L, H = c.num_hidden_layers, c.num_attention_heads
    assert len(ref.attentions) == L and ref.attentions[0].shape[1] == H

    backend = TorchBackend(model, chunk_size=CHUNK)
    got = capture(backend, ids, mask)
    first, ent, received = eager_stats(ref.attentions, lengths)
    exact = dict(atol=1e-6, rtol=0)
    torch.testing.assert_close(got["attn.first_mass"].double(), first, **exact)
    torch.testing.assert_close(got["attn.entropy"].double(), ent, **exact)
    # received mass per key as the mean over the batch's query rows: the sum itself reaches ~13 at
    # key 0, where one float32 ulp is already 1e-6
    rows = sum(lengths)
    torch.testing.assert_close(got["attn.key_received_sum"].double() / rows, received / rows, **exact)
    # the statistics are not trivially uniform: some head is far from 1/(i+1) on the first token
    uniform = sum(1 / (i + 1) for i in range(1, LENGTHS[0])) / (LENGTHS[0] - 1)
    assert (first[0] - uniform).abs().max() > 0.03

    # the model's output with the capture on is its plain output
    with torch.no_grad(), capturing(model, _Discard(), backend.layer_of, CHUNK) as cap:
        captured = model(input_ids=ids, attention_mask=mask).logits
    assert cap.called == set(range(L))
    for b, n in enumerate(lengths):
        torch.testing.assert_close(captured[b, :n], plain[b, :n], atol=1e-5, rtol=0)
    assert model.config._attn_implementation != NAME  # restored


class _Discard:
    def attention_rows(self, layer, probs, start, entropy=None):
        pass


def test_architecture_outside_the_interface_names_tl(tmp_path):
    bloom = tf.BloomForCausalLM(tf.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4))
    with pytest.raises(BadInput, match="--backend tl"):
        TorchBackend(bloom)


def test_layer_that_bypasses_the_interface_is_refused(tmp_path):
    model, _ = build("llama", tmp_path)
    attn = model.model.layers[1].self_attn
    own = attn.forward
    # a layer computing its attention some other way (a custom kernel): it never calls the interface
    attn.forward = lambda *a, **kw: (torch.zeros_like(kw.get("hidden_states", a[0] if a else None)), None)
    ids, mask = batch()
    with pytest.raises(BadInput, match=r"layers \[1\].*--backend tl"):
        capture(TorchBackend(model, chunk_size=CHUNK), ids, mask)
    attn.forward = own
    assert model.config._attn_implementation == "sdpa"


def test_sink_logits_take_mass(tmp_path):
    """GPT-OSS's learned sink logits, at the extremes: a sink of -1e4 takes nothing (rows sum to 1),
    one of +1e4 takes everything (rows sum to 0, so no first-token mass and no entropy)."""
    model, _ = build("gpt-oss-moe-sinks", tmp_path)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.copy_(torch.tensor([-1e4, 1e4, 0.0, 0.0]))

    class Rows:
        def __init__(self):
            self.sums, self.entropy = [], []

        def attention_rows(self, layer, probs, start, entropy=None):
            self.sums.append(probs.sum(-1))  # (B, H, C)
            self.entropy.append(entropy)

    ids, mask = batch()
    rows = Rows()
    with torch.no_grad(), capturing(model, rows, TorchBackend(model).layer_of, CHUNK):
        model(input_ids=ids[:1], attention_mask=mask[:1])
    sums, ent = torch.cat(rows.sums, -1), torch.cat(rows.entropy, -1)  # (1, H, layers · T)
    torch.testing.assert_close(sums[:, 0], torch.ones_like(sums[:, 0]), atol=1e-6, rtol=0)
    assert sums[:, 1].abs().max() < 1e-6 and ent[:, 1].abs().max() < 1e-6
    assert ((sums[:, 2:] > 0) & (sums[:, 2:] < 1)).all()


@pytest.mark.parametrize("where", ["boot", "run"])
def test_transformer_lens_failure_is_one_line(tmp_path, monkeypatch, where):
    """What TransformerLens raises on an architecture it does not adapt becomes BadInput (exit 2)."""
    from transformer_lens.model_bridge import TransformerBridge

    from karma_probe.capture.backends import TransformerLensBackend
    from karma_probe.model.backbones import load_tokenizer

    tok = load_tokenizer("tiny")
    tok.save_pretrained(tmp_path)
    tok = tf.AutoTokenizer.from_pretrained(tmp_path)
    model, _ = build("gpt2", tmp_path)

    def boom(*a, **kw):
        raise AttributeError("'GPT2Config' object has no attribute 'd_vocab'\nsecond line")

    class Bridge:
        eval = staticmethod(lambda: None)
        run_with_cache = staticmethod(boom)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", boom if where == "boot" else lambda *a, **kw: Bridge())
    with pytest.raises(BadInput) as err:
        TransformerLensBackend(model, tok).run(*batch(), _Discard())
    assert str(err.value) == ("--backend tl: TransformerLens cannot capture GPT2LMHeadModel: "
                              "AttributeError: 'GPT2Config' object has no attribute 'd_vocab'")


def test_bfloat16_model_scores_in_float32(tmp_path):
    """A bfloat16 model: the attention function's scores are float32 products of its bfloat16 queries
    and keys (rounding a logit of 10 to bfloat16 moves its probability by up to 4%); the whole
    capture stays within bfloat16 noise of the float32 model and keeps the bfloat16 model's logits."""
    from karma_probe.capture.attention import Capture, _ACTIVE, capture_attention

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 40, 16, generator=g).mul(3).to(torch.bfloat16) for _ in range(3))

    class Rows(_Discard):
        def attention_rows(self, layer, probs, start, entropy=None):
            self.rows = probs  # one chunk of all 40 rows: (1, 2, 40, 40)

    class Module:
        is_causal = True

    mod, rows = Module(), Rows()
    _ACTIVE.append(Capture(rows, {id(mod): 0}, 40))
    try:
        capture_attention(mod, q, k, v, None, scaling=0.25)
    finally:
        _ACTIVE.pop()
    future = torch.ones(40, 40, dtype=torch.bool).triu(1)
    want = torch.softmax((q.double() @ k.double().transpose(2, 3) * 0.25).masked_fill(future, -math.inf), -1)
    rounded = torch.softmax((q @ k.transpose(2, 3) * 0.25).double().masked_fill(future, -math.inf), -1)
    assert (rows.rows.double() - want).abs().max() < 1e-5 < (rounded - want).abs().max()

    model, eager = build("llama", tmp_path)
    ids, mask = batch()
    lengths = list(LENGTHS)
    with torch.no_grad():
        want = eager_stats(eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions, lengths)
        plain = model.to(torch.bfloat16)(input_ids=ids, attention_mask=mask).logits.float()
    got = capture(TorchBackend(model, chunk_size=CHUNK), ids, mask)
    assert got["attn.first_mass"].dtype == torch.float32
    torch.testing.assert_close(got["attn.first_mass"].double(), want[0], atol=1e-2, rtol=0)
    torch.testing.assert_close(got["attn.entropy"].double(), want[1], atol=1e-2, rtol=0)
    with torch.no_grad(), capturing(model, _Discard(), TorchBackend(model).layer_of, CHUNK):
        captured = model(input_ids=ids, attention_mask=mask).logits.float()
    for b, n in enumerate(lengths):  # the output: bfloat16 values, as the model's own attention
        torch.testing.assert_close(captured[b, :n], plain[b, :n], atol=0.1, rtol=0.05)


@pytest.mark.parametrize("block", [1, 700])
def test_long_sequences_take_fewer_rows_per_chunk(tmp_path, monkeypatch, block):
    """The block cap (1 row, or 3 rows of 2 x 4 heads x 29 keys) changes the chunking, not the result."""
    import karma_probe.capture.attention as A

    model, _ = build("mistral-window", tmp_path)
    ids, mask = batch()
    want = capture(TorchBackend(model, chunk_size=CHUNK), ids, mask)
    monkeypatch.setattr(A, "BLOCK_ELEMENTS", block)
    seen = []
    own = A.attention_chunk
    monkeypatch.setattr(A, "attention_chunk", lambda q, *a, **kw: seen.append(q.shape[2]) or own(q, *a, **kw))
    got = capture(TorchBackend(model, chunk_size=CHUNK), ids, mask)
    assert max(seen) == (1 if block == 1 else 3)
    for key in ("attn.first_mass", "attn.entropy"):
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)
    rows = sum(LENGTHS)  # per query row, as in the parity test
    torch.testing.assert_close(got["attn.key_received_sum"] / rows, want["attn.key_received_sum"] / rows, atol=1e-6, rtol=0)


def test_a_model_without_sdpa_loads_eager_and_captures(tmp_path):
    """Gemma 2 has no SDPA (soft-capping): load_backbone falls back to eager instead of refusing, and
    the capture then runs it through the interface like any other."""
    from karma_probe.model.backbones import load_backbone, load_tokenizer

    build("gemma2-softcap-windows", tmp_path)
    load_tokenizer("tiny").save_pretrained(tmp_path)
    model, _ = load_backbone(str(tmp_path))
    assert model.config._attn_implementation == "eager"
    ids, mask = batch()
    got = capture(TorchBackend(model, chunk_size=CHUNK), ids, mask)
    assert got["attn.first_mass"].shape == (2, 2, 4) and model.config._attn_implementation == "eager"
