import dataclasses

import pytest

from openlpu.errors import UserError
from openlpu.models.zoo import ZOO
from openlpu.perf.gpu import GPUS, H100Sxm, gpu_baseline, max_batch
from openlpu.perf.roofline import Roofline, prefill_work
from openlpu.sources import sources

LLAMA70 = ZOO["llama2-70b-4096"]
H100 = H100Sxm()


@pytest.mark.parametrize("gpu", list(GPUS.values()), ids=list(GPUS))
def test_every_gpu_figure_has_a_source(gpu):
    cited = {name: src for name, src in sources(gpu).items() if name != "name"}
    assert all(cited.values()), cited
    assert "assumed" in cited["allreduce_latency_s"]
    assert gpu.nvlink_one_way_bytes_per_s == gpu.nvlink_bytes_per_s / 2


def test_decode_step_terms_by_hand():
    run = gpu_baseline(LLAMA70, H100, gpus=8, batch=1, context=4096, numerics="int8")
    # Matmul weights: everything but the embedding table and the norms, 1 byte each, 1/8 per GPU;
    # plus one user's KV cache at int8 (163,840 bytes a token), split over the 8 KV heads.
    weights = 68_976_648_192 - 32000 * 8192 - (80 * 2 * 8192 + 8192)
    hbm = (weights / 8 + 4096 * 163_840 / 8) / 3.35e12
    # 80 layers x 2 ring all-reduces of one token's 8192 fp16 activations over 450 GB/s one way.
    network = 160 * (5e-6 + 2 * 7 / 8 * 8192 * 2 / 450e9)
    assert run.decode.memory_s == pytest.approx(hbm, rel=1e-12)
    assert run.decode.network_s == pytest.approx(network, rel=1e-12)
    assert run.decode.bound == "memory"
    assert run.decode.time_s == pytest.approx(hbm + network, rel=1e-12)
    assert run.tokens_per_s_per_user == pytest.approx(1 / (hbm + network), rel=1e-12)


def test_decode_turns_compute_bound_at_the_ops_per_byte_ratio():
    # fp16: 2 FLOPs per weight per token and 2 bytes per weight, so compute catches up with the weight
    # traffic at batch = peak FLOPs / HBM bandwidth = 989.4 / 3.35 = 295 (KV traffic is nil at context 1).
    ridge = H100.fp16_flops / H100.hbm_bytes_per_s
    below = gpu_baseline(LLAMA70, H100, 8, batch=int(ridge) - 5, context=1, numerics="fp16")
    above = gpu_baseline(LLAMA70, H100, 8, batch=int(ridge) + 5, context=1, numerics="fp16")
    assert below.decode.memory_s > below.decode.compute_s
    assert above.decode.compute_s > above.decode.memory_s
    assert above.tokens_per_s == pytest.approx(above.batch * above.tokens_per_s_per_user)


def test_replicas_fill_the_server():
    llama7 = ZOO["llama2-7b-2048"]
    one = gpu_baseline(llama7, H100, gpus=1, batch=4, numerics="fp16")
    assert one.decode.network_s == 0
    assert one.replicas_per_server == 8
    assert one.tokens_per_s_per_server == pytest.approx(8 * 4 / one.decode.time_s)


def test_prefill_flops_sum_every_prompt_token():
    m, p = ZOO["llama3-8b-8192"], 37
    work = prefill_work(m, "fp16", p)
    assert work.flops == pytest.approx(sum(m.flops_per_token(t) for t in range(1, p + 1)), rel=1e-12)
    assert work.kv_bytes == p * m.kv_bytes_per_token("fp16")
    long = gpu_baseline(LLAMA70, H100, 8, prompt_tokens=4096, numerics="fp16")
    assert long.prefill.bound == "compute"  # thousands of tokens per weight read
    assert long.ttft_s == long.prefill.time_s


def test_mixtral_decode_reads_more_experts_as_the_batch_grows():
    mixtral = ZOO["mixtral-8x7b-32768"]
    one = gpu_baseline(mixtral, H100, 8, batch=1, context=1, numerics="fp16")
    many = gpu_baseline(mixtral, H100, 8, batch=64, context=1, numerics="fp16")
    expert_bytes = mixtral.n_layers * mixtral.expert_params * 2
    extra = (mixtral.expected_experts(64) - 2) * expert_bytes / 8 / H100.hbm_bytes_per_s
    kv = 63 * mixtral.kv_bytes_per_token("fp16") / 8 / H100.hbm_bytes_per_s
    assert many.decode.memory_s - one.decode.memory_s == pytest.approx(extra + kv, rel=1e-9)


def test_memory_capacity_and_parallelism_are_checked():
    # 138.0 GB of fp16 weights and 1.3 GB of KV cache for one user at 4096 tokens.
    with pytest.raises(UserError, match=r"needs 139\.3 GB per GPU on 1 GPUs"):
        gpu_baseline(LLAMA70, H100, gpus=1, numerics="fp16")
    biggest = max_batch(LLAMA70, H100, 8, 4096, "fp16")
    # (80 GB - 137.95 GB / 8) / (4096 tokens x 327,680 bytes / 8 KV heads) = 374.05: 374 users fit.
    assert biggest == 374
    gpu_baseline(LLAMA70, H100, 8, batch=biggest, numerics="fp16")
    with pytest.raises(UserError, match="smaller batch"):
        gpu_baseline(LLAMA70, H100, 8, batch=biggest + 1, numerics="fp16")
    with pytest.raises(UserError, match="1, 2, 4, 8"):
        gpu_baseline(LLAMA70, H100, gpus=3)
    with pytest.raises(UserError, match="int8, fp16"):
        gpu_baseline(LLAMA70, H100, 8, numerics="fp8")
    with pytest.raises(UserError, match="at least 1"):
        gpu_baseline(LLAMA70, H100, 8, batch=0)


def test_roofline_overlaps_memory_and_compute_but_not_the_network():
    r = Roofline(memory_s=3.0, compute_s=2.0, network_s=4.0)
    assert r.time_s == 7.0
    assert r.bound == "network"
    assert dataclasses.replace(r, network_s=0.5).bound == "memory"
