import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.models import reference
from openlpu.models.reference import LlamaReference, apply_rope, greedy, rope_tables
from openlpu.models.tiny_gguf import TINY_CONFIG


def hf_layout(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's converter permutation of Q/K rows: GGUF (head, pair, 2) -> Hugging Face (head, 2, pair)."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def naive_logits(config, weights, ids):
    """Textbook llama in float64 on Hugging Face-layout Q/K with rotate-half RoPE: no cache, head by head."""
    c = config
    f64 = np.float64

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + c.norm_eps) * w

    def rotate_half_rope(x):  # x (T, head_dim); dims i and i + head_dim/2 form a pair
        half = c.head_dim // 2
        theta = c.rope_theta ** (-np.arange(half) * 2.0 / c.head_dim)
        angle = np.arange(len(x))[:, None] * np.concatenate([theta, theta])[None, :]
        rotated = np.concatenate([-x[:, half:], x[:, :half]], axis=1)
        return x * np.cos(angle) + rotated * np.sin(angle)

    n = len(ids)
    x = weights.token_embd[ids].astype(f64)
    causal = np.triu(np.ones((n, n), bool), k=1)
    for lw in weights.layers:
        h = rms(x, lw.attn_norm)
        wq, wk = hf_layout(lw.wq.astype(f64), c.n_heads), hf_layout(lw.wk.astype(f64), c.n_kv_heads)
        heads = []
        for head in range(c.n_heads):
            kv = head // (c.n_heads // c.n_kv_heads)
            rows = slice(head * c.head_dim, (head + 1) * c.head_dim)
            kv_rows = slice(kv * c.head_dim, (kv + 1) * c.head_dim)
            q = rotate_half_rope(h @ wq[rows].T)
            k = rotate_half_rope(h @ wk[kv_rows].T)
            v = h @ lw.wv[kv_rows].T.astype(f64)
            scores = np.where(causal, -np.inf, q @ k.T / np.sqrt(c.head_dim))
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            heads.append((p / p.sum(axis=1, keepdims=True)) @ v)
        x = x + np.concatenate(heads, axis=1) @ lw.wo.T
        h = rms(x, lw.ffn_norm)
        gate = h @ lw.w_gate.T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ lw.w_up.T)) @ lw.w_down.T
    return rms(x, weights.output_norm) @ weights.output.T.astype(f64)


def prompt(n: int, seed: int = 1) -> list[int]:
    return np.random.default_rng(seed).integers(0, TINY_CONFIG.vocab, n).tolist()


def test_reference_matches_a_textbook_llama_on_hugging_face_layout(tiny):
    ids = prompt(40)
    got = LlamaReference(tiny.config, tiny.weights).forward(ids, all_logits=True)
    want = naive_logits(tiny.config, tiny.weights, ids)
    assert want.std() > 1  # logits of a useful scale, so the tolerance below is tight
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)


def test_kv_cache_decode_equals_one_full_pass(tiny, monkeypatch):
    monkeypatch.setattr(reference, "_INITIAL_CACHE_TOKENS", 4)  # force the cache to grow, three times
    ids = prompt(19)
    full = LlamaReference(tiny.config, tiny.weights).forward(ids, all_logits=True)
    model = LlamaReference(tiny.config, tiny.weights)
    assert model.capacity == 4
    steps = [model.forward(ids[:5], all_logits=True)]
    steps += [model.forward([t])[None, :] for t in ids[5:9]]
    steps.append(model.forward(ids[9:], all_logits=True))
    # Same maths, different BLAS summation orders (gemm vs gemv): equal to fp32 rounding, not bit for bit.
    np.testing.assert_allclose(np.concatenate(steps), full, rtol=0, atol=1e-4)
    assert model.position == 19 and model.capacity == 32  # doubled 4 -> 8 -> 16 -> 32


def test_rope_rotates_adjacent_pairs_as_complex_numbers():
    cos, sin = rope_tables(TINY_CONFIG, 50)
    x = np.random.default_rng(0).standard_normal((50, 3, TINY_CONFIG.head_dim)).astype(np.float32)
    i = np.arange(TINY_CONFIG.head_dim // 2)
    angle = np.arange(50)[:, None] * TINY_CONFIG.rope_theta ** (-2.0 * i / TINY_CONFIG.head_dim)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * angle)[:, None, :]
    got = apply_rope(x, cos, sin)
    np.testing.assert_allclose(got[..., 0::2], z.real, atol=1e-5)
    np.testing.assert_allclose(got[..., 1::2], z.imag, atol=1e-5)


def test_greedy_is_the_argmax_of_a_fresh_pass_at_every_step(tiny):
    model = LlamaReference(tiny.config, tiny.weights)
    ids = prompt(12)
    out = greedy(model, ids, 16)
    assert len(out) == 16 and len(set(out)) > 4  # the tiny model does not just repeat itself
    for step, token in enumerate(out):
        fresh = LlamaReference(tiny.config, tiny.weights).forward(ids + out[:step])
        assert token == int(np.argmax(fresh))
    assert greedy(model, ids, 16, stop_ids=[out[2]]) == out[:3]


def test_prompt_longer_than_the_context_is_refused(tiny):
    model = LlamaReference(tiny.config, tiny.weights)
    with pytest.raises(UserError, match="0 cached plus 257 new tokens exceed the context length of 256"):
        model.forward(prompt(257))


def test_bad_token_ids_are_refused(tiny):
    model = LlamaReference(tiny.config, tiny.weights)
    with pytest.raises(UserError, match=r"token ids must lie in \[0, 384\); got \[384, -1\]"):
        model.forward([3, 384, 7, -1])
    with pytest.raises(UserError, match="no tokens"):
        model.forward([])


def test_smollm2_knows_the_capital_of_france(smollm2, smollm2_reference):
    tok = smollm2.tokenizer
    ids = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    answer = tok.decode(greedy(smollm2_reference, ids, 24, tok.stop_ids), skip_special=True)
    assert "Paris" in answer
