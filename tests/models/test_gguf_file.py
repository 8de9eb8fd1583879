import numpy as np
import pytest
from gguf import GGUFWriter, RopeScalingType

from openlpu.errors import UserError
from openlpu.models.gguf_file import open_gguf, read_llama
from openlpu.models.tiny_gguf import TINY_CONFIG, tiny_weights, write_tiny_gguf

LAYER_TENSORS = {  # LayerWeights field -> GGUF tensor name in block i
    "attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
    "ffn_norm": "ffn_norm", "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down",
}


def loaded_tensors(weights):
    """GGUF tensor name -> loaded array, for comparing with what the tiny writer wrote."""
    out = {"token_embd.weight": weights.token_embd, "output_norm.weight": weights.output_norm}
    for i, layer in enumerate(weights.layers):
        for attr, name in LAYER_TENSORS.items():
            out[f"blk.{i}.{name}.weight"] = getattr(layer, attr)
    return out


def load(path):
    return read_llama(open_gguf(path))


def test_f32_tiny_model_loads_exactly_what_was_written(tiny_path):
    config, weights = load(tiny_path)
    assert config == TINY_CONFIG
    written = tiny_weights()
    got = loaded_tensors(weights)
    assert got.keys() == written.keys()
    for name, array in written.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    assert weights.output is weights.token_embd  # tied: no output.weight in the file
    assert set(weights.tensor_types.values()) == {"F32"}


def test_untied_model_reads_its_own_output_matrix(tmp_path):
    config, weights = load(write_tiny_gguf(tmp_path / "untied.gguf", tied=False))
    assert not config.tie_embeddings
    np.testing.assert_array_equal(weights.output, tiny_weights(config)["output.weight"])
    assert not np.array_equal(weights.output, weights.token_embd)


def test_f16_weights_are_the_fp16_rounding_of_the_originals(tmp_path):
    _, weights = load(write_tiny_gguf(tmp_path / "f16.gguf", tensor_type="F16"))
    written, got = tiny_weights(), loaded_tensors(weights)
    for name, array in written.items():
        expected = array if array.ndim == 1 else array.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(got[name], expected, err_msg=name)
    assert weights.tensor_types["blk.0.attn_q.weight"] == "F16"
    assert weights.tensor_types["blk.0.attn_norm.weight"] == "F32"


def blocks(a):
    return a.reshape(-1, 32)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_1"])
def test_quantised_weights_are_within_half_a_step_of_the_originals(tmp_path, qtype):
    _, weights = load(write_tiny_gguf(tmp_path / "q.gguf", tensor_type=qtype))
    written, got = tiny_weights(), loaded_tensors(weights)
    for name, array in written.items():
        if array.ndim == 1:
            continue
        w, err = blocks(array), np.abs(blocks(got[name]) - blocks(array))
        # One quantisation step per 32-value block; scales are stored in fp16 (relative error 2^-11).
        if qtype == "Q8_0":
            step = np.abs(w).max(axis=1) / 127
            bound = step / 2 + 127 * step * 2.0**-11
        else:
            step = (w.max(axis=1) - w.min(axis=1)) / 15
            bound = step / 2 + 15 * step * 2.0**-11 + np.abs(w.min(axis=1)) * 2.0**-11
        assert (err.max(axis=1) <= bound * 1.0001).all(), name
        assert err.max() > 0  # really quantised


def decode_q8_0(raw: np.ndarray) -> np.ndarray:
    """ggml Q8_0 rows, decoded by hand: 34-byte blocks of an fp16 scale d then 32 int8 codes q; d * q."""
    b = raw.reshape(raw.shape[0], -1, 34)
    d = b[..., :2].copy().view(np.float16).astype(np.float32)
    q = b[..., 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(raw.shape[0], -1)


def decode_q4_1(raw: np.ndarray) -> np.ndarray:
    """ggml Q4_1 rows: 20-byte blocks of fp16 d, fp16 m, 16 bytes whose low nibbles are values 0..15 of
    the block and high nibbles values 16..31; value = d * nibble + m."""
    b = raw.reshape(raw.shape[0], -1, 20)
    d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
    m = b[..., 2:4].copy().view(np.float16).astype(np.float32)
    nibbles = np.concatenate([b[..., 4:] & 0x0F, b[..., 4:] >> 4], axis=-1).astype(np.float32)
    return (d * nibbles + m).reshape(raw.shape[0], -1)


@pytest.mark.parametrize(("qtype", "decode"), [("Q8_0", decode_q8_0), ("Q4_1", decode_q4_1)])
def test_dequantisation_matches_a_hand_decoding_of_the_block_bytes(tmp_path, qtype, decode):
    reader = open_gguf(write_tiny_gguf(tmp_path / "q.gguf", tensor_type=qtype))
    _, weights = read_llama(reader)
    raw = {t.name: np.asarray(t.data) for t in reader.tensors}
    got = loaded_tensors(weights)
    for name in ("token_embd.weight", "blk.0.attn_k.weight", "blk.1.ffn_down.weight"):
        np.testing.assert_array_equal(got[name], decode(raw[name]), err_msg=name)


def test_real_model_shape(smollm2):
    c = smollm2.config
    assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim) == (30, 576, 9, 3, 64)
    assert (c.d_ffn, c.vocab, c.context, c.rope_theta) == (1536, 49152, 8192, 100000.0)
    assert c.tie_embeddings and smollm2.weights.output is smollm2.weights.token_embd
    assert round(c.param_count / 1e6) == 135  # the "135M" of the name
    assert smollm2.weights.tensor_types["token_embd.weight"] == "Q8_0"
    assert smollm2.weights.tensor_types["blk.0.attn_q.weight"] == "Q4_1"


def test_missing_file_is_one_sentence_with_the_fix(tmp_path):
    with pytest.raises(UserError, match="does not exist; give the path of a .gguf file"):
        open_gguf(tmp_path / "nope.gguf")


def test_non_gguf_file_is_refused(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("these are not the weights you are looking for")
    with pytest.raises(UserError, match="is not a readable GGUF file"):
        open_gguf(path)


def write_stub(path, arch, **metadata):
    """A GGUF with an embedding table and the given `add_*` metadata calls, e.g. expert_count=8."""
    writer = GGUFWriter(path, arch)
    writer.add_embedding_length(4)
    writer.add_head_count(2)
    for key, value in metadata.items():
        getattr(writer, f"add_{key}")(value)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_architecture_is_refused(tmp_path):
    with pytest.raises(UserError, match="architecture 'gpt2' is not supported"):
        load(write_stub(tmp_path / "gpt2.gguf", "gpt2"))


@pytest.mark.parametrize(("metadata", "message"), [
    ({"expert_count": 8}, "mixture-of-experts llama GGUFs are not supported yet"),
    ({"rope_scaling_type": RopeScalingType.YARN}, "scaling 'yarn'\\) is not supported"),
    ({"rope_dimension_count": 1}, "dimension 1 of 2"),
])
def test_llama_variants_the_reference_does_not_implement_are_refused(tmp_path, metadata, message):
    with pytest.raises(UserError, match=message):
        load(write_stub(tmp_path / "variant.gguf", "llama", **metadata))


def test_unsupported_tensor_type_is_refused(tmp_path):
    with pytest.raises(UserError, match="stored as Q4_0, which openlpu does not read"):
        load(write_tiny_gguf(tmp_path / "q4_0.gguf", tensor_type="Q4_0"))
