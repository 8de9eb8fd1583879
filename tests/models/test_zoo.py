import dataclasses
import json

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.models.zoo import (
    ZOO,
    DecoderConfig,
    EncoderConfig,
    from_hf_config,
    load_config,
    load_decoder_config,
)

# Total parameters as Hugging Face's safetensors metadata reports them for the published checkpoints.
HF_PARAMS = {
    "llama2-7b-2048": 6_738_415_616,
    "llama2-13b-4096": 13_015_864_320,
    "llama2-70b-4096": 68_976_648_192,
    "mixtral-8x7b-32768": 46_702_792_704,
    "llama3-8b-8192": 8_030_261_248,
    "llama3-70b-8192": 70_553_706_496,
}

# The published config.json files, verbatim (meta-llama/Llama-2-70b-hf, mistralai/Mixtral-8x7B-v0.1).
LLAMA2_70B_CONFIG = """{
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 8192, "initializer_range": 0.02, "intermediate_size": 28672,
  "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 64,
  "num_hidden_layers": 80, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "tie_word_embeddings": false, "torch_dtype": "float16",
  "transformers_version": "4.32.0.dev0", "use_cache": true, "vocab_size": 32000
}"""
MIXTRAL_CONFIG = """{
  "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
  "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
  "output_router_logits": false, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.02, "sliding_window": null, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000
}"""


@pytest.mark.parametrize("name", HF_PARAMS)
def test_decoder_parameter_counts_equal_the_published_checkpoints(name):
    assert ZOO[name].param_count == HF_PARAMS[name]


@pytest.mark.parametrize(
    ("name", "published"),
    [("llama2-70b-4096", 69e9), ("llama3-8b-8192", 8.03e9), ("bert-base", 110e6), ("bert-large", 340e6),
     ("resnet50", 25.6e6)],
)
def test_parameter_counts_within_2_percent_of_the_papers_rounded_sizes(name, published):
    assert abs(ZOO[name].param_count / published - 1) < 0.02


def test_mixtral_uses_12_9b_of_its_46_7b_parameters_per_token():
    # Mistral AI, "Mixtral of experts" (2023): 46.7B total, 12.9B used per token.
    mixtral = ZOO["mixtral-8x7b-32768"]
    assert round(mixtral.param_count / 1e9, 1) == 46.7
    assert round(mixtral.active_param_count / 1e9, 1) == 12.9
    assert ZOO["llama2-70b-4096"].active_param_count == ZOO["llama2-70b-4096"].param_count


def test_kv_cache_and_weight_bytes_follow_the_numerics():
    llama70, llama7 = ZOO["llama2-70b-4096"], ZOO["llama2-7b-2048"]
    # 2 (k and v) x 80 layers x 8 KV heads x 128 dims x 2 bytes; Llama-2-7B has no GQA: 0.5 MiB a token.
    assert llama70.kv_bytes_per_token("fp16") == 327_680
    assert llama70.kv_bytes_per_token("int8") == 163_840
    assert llama7.kv_bytes_per_token("fp16") == 512 * 1024
    assert llama70.weight_bytes("int8") == HF_PARAMS["llama2-70b-4096"]
    assert llama70.weight_bytes("fp16") == 2 * HF_PARAMS["llama2-70b-4096"]
    with pytest.raises(UserError, match="int8, fp16"):
        llama70.weight_bytes("fp8")


@pytest.mark.parametrize("name", ["llama2-70b-4096", "mixtral-8x7b-32768", "llama3-8b-8192"])
def test_flops_per_token_are_two_per_used_matmul_weight_plus_attention(name):
    m = ZOO[name]
    embedding_table = m.vocab * m.d_model
    norms = m.n_layers * 2 * m.d_model + m.d_model
    assert m.flops_per_token(0) == 2 * (m.active_param_count - embedding_table - norms)
    assert m.flops_per_token(1000) - m.flops_per_token(0) == 4 * m.n_layers * m.n_heads * m.head_dim * 1000


def test_expected_experts_match_random_top2_routing():
    mixtral = ZOO["mixtral-8x7b-32768"]
    rng = np.random.default_rng(0)
    trials, batch = 4000, 4
    # Each token picks 2 distinct experts of 8 uniformly: count the distinct experts a batch touches.
    picks = np.argsort(rng.random((trials, batch, 8)), axis=-1)[..., :2].reshape(trials, -1)
    touched = np.mean([len(set(row)) for row in picks])
    assert mixtral.expected_experts(batch) == pytest.approx(touched, rel=0.02)
    assert mixtral.expected_experts(1) == 2
    assert mixtral.expected_experts(10_000) == pytest.approx(8)
    assert mixtral.matmul_params(10_000) > mixtral.matmul_params(1)


def test_published_hf_configs_load_as_the_zoo_models(tmp_path):
    for text, name in ((LLAMA2_70B_CONFIG, "llama2-70b-4096"), (MIXTRAL_CONFIG, "mixtral-8x7b-32768")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(text)
        assert load_config(str(folder)) == ZOO[name]  # a folder of a download, named as the zoo names it


@pytest.mark.parametrize("name", [n for n, m in ZOO.items() if isinstance(m, DecoderConfig)])
def test_hf_config_round_trip(tmp_path, name):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(ZOO[name].to_hf_config()))
    assert from_hf_config(path, name=name) == ZOO[name]


def _gguf_header(path, config: DecoderConfig):
    """A llama GGUF as llama.cpp writes one for `config` (experts in the header), with only its embedding."""
    from openlpu.models.tiny_gguf import llama_header

    writer = llama_header(path, config)
    writer.add_tensor("token_embd.weight", np.zeros((config.vocab, config.d_model), np.float16))
    writer.add_tensor("output.weight", np.zeros((config.vocab, config.d_model), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("experts, used", [(1, 1), (8, 2)])
def test_gguf_headers_of_the_llama_family_load_with_their_experts(tmp_path, experts, used):
    # Mixtral's shape, narrowed so the file stays small; llama.cpp writes Mixtral as a llama with experts.
    want = dataclasses.replace(ZOO["mixtral-8x7b-32768"], name="small-mixtral", d_model=256, n_heads=8,
                               n_kv_heads=2, head_dim=0, d_ffn=512, vocab=300, n_experts=experts,
                               experts_per_token=used, norm_eps=float(np.float32(1e-5)))  # GGUF keeps fp32
    loaded = load_decoder_config(str(_gguf_header(tmp_path / "m.gguf", want)))
    assert loaded == want and loaded.source.startswith("GGUF file") and loaded.is_moe == (experts > 1)


def test_hf_config_keeps_its_own_head_dim(tmp_path):
    config = json.loads(LLAMA2_70B_CONFIG) | {"head_dim": 96}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_decoder_config(str(tmp_path / "config.json"))
    assert loaded.head_dim == 96
    assert loaded.d_attn == 64 * 96


def test_bad_names_and_configs_get_one_sentence(tmp_path):
    with pytest.raises(UserError) as err:
        load_config("llama2-70b")
    assert all(name in str(err.value) for name in ZOO)
    with pytest.raises(UserError, match="not a decoder LLM"):
        load_decoder_config("bert-base")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="llama, mistral, mixtral"):
        load_config(str(path))
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(UserError, match="num_hidden_layers"):
        load_config(str(path))
    path.write_text("{not json")
    with pytest.raises(UserError, match="config.json"):
        load_config(str(path))
    with pytest.raises(UserError, match="KV heads"):
        dataclasses.replace(ZOO["llama2-70b-4096"], n_kv_heads=7)


@pytest.mark.parametrize("name", ["bert-base", "bert-large"])
def test_bert_graph_matches_closed_forms(name):
    bert: EncoderConfig = ZOO[name]
    s, d, f, n = 128, bert.d_model, bert.d_ffn, bert.n_layers
    graph = bert.graph(s)
    assert graph.param_count == bert.param_count
    # Per layer: q, k, v, out (s x d x d each), two FFN matmuls, q.k and a.v (s x s x d each); the pooler.
    assert graph.macs == n * (s * (4 * d * d + 2 * d * f) + 2 * s * s * d) + d * d
    with pytest.raises(UserError, match="1 to 512"):
        bert.graph(513)


def test_bert_parameter_counts_equal_hugging_face():
    # BertModel (with pooler) totals of bert-base-uncased and bert-large-uncased.
    assert ZOO["bert-base"].param_count == 109_482_240
    assert ZOO["bert-large"].param_count == 335_141_888


def test_resnet50_v2_shapes_and_parameters():
    resnet = ZOO["resnet50"]
    assert resnet.param_count == 25_613_800  # Keras ResNet50V2 total, batch-norm statistics included
    outs = {stage: resnet.layer(f"conv{stage}_block{units}.out").out_shape
            for stage, units in ((2, 3), (3, 4), (4, 6), (5, 3))}
    # v2 strides in the last unit of stages 2-4, so each stage ends already downsampled.
    assert outs == {2: (28, 28, 256), 3: (14, 14, 512), 4: (7, 7, 1024), 5: (7, 7, 2048)}
    assert resnet.layer("conv1").macs == 112 * 112 * 7 * 7 * 3 * 64
    assert resnet.layer("fc").macs == 2048 * 1000
    names = set()
    for layer in resnet.layers:  # a graph in topological order: every input is produced earlier
        assert set(layer.inputs) <= names
        names.add(layer.name)
