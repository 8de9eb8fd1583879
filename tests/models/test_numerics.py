from dataclasses import replace

import numpy as np

from openlpu.models.numerics import Fp32, quantize_int8_per_channel
from openlpu.models.reference import LlamaReference
from openlpu.models.registry import load_model
from openlpu.models.tiny_gguf import write_tiny_gguf


def test_int8_per_channel_codes_and_error_bound():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((48, 96)).astype(np.float32) * rng.uniform(0.01, 10, (48, 1)).astype(np.float32)
    w[7] = 0.0
    qw = quantize_int8_per_channel(w)
    assert qw.q.dtype == np.int8 and qw.scale.shape == (48,)
    assert np.abs(qw.q).max() == 127 and qw.q.min() >= -127
    nonzero = np.arange(48) != 7
    # each row's largest magnitude maps to exactly +-127
    assert (np.abs(qw.q[nonzero]).max(axis=1) == 127).all()
    np.testing.assert_allclose(qw.scale[nonzero], np.abs(w[nonzero]).max(axis=1) / 127, rtol=1e-6)
    assert (np.abs(qw.dequantize() - w) <= qw.scale[:, None] / 2 * (1 + 1e-5)).all()
    assert (qw.q[7] == 0).all() and (qw.dequantize()[7] == 0).all()


class RoundWeightsToFp16(Fp32):
    """A stand-in numerics mode: weights rounded to fp16 when prepared, fp32 arithmetic."""

    def prepare(self, w):
        return w.astype(np.float16).astype(np.float32)


def test_every_weight_matrix_goes_through_the_numerics(tmp_path):
    # Untied, so the embedding lookup (not a matmul) keeps fp32 while the output matrix is rounded.
    model = load_model(str(write_tiny_gguf(tmp_path / "untied.gguf", tied=False)))
    w = model.weights

    def fp16(a):
        return a.astype(np.float16).astype(np.float32)

    rounded = replace(
        w,
        layers=tuple(
            replace(lw, wq=fp16(lw.wq), wk=fp16(lw.wk), wv=fp16(lw.wv), wo=fp16(lw.wo),
                    w_gate=fp16(lw.w_gate), w_up=fp16(lw.w_up), w_down=fp16(lw.w_down))
            for lw in w.layers
        ),
        output=fp16(w.output),
    )
    ids = list(range(3, 40))
    via_numerics = LlamaReference(model.config, w, RoundWeightsToFp16()).forward(ids, all_logits=True)
    via_weights = LlamaReference(model.config, rounded).forward(ids, all_logits=True)
    plain = LlamaReference(model.config, w).forward(ids, all_logits=True)
    np.testing.assert_array_equal(via_numerics, via_weights)
    assert np.abs(via_numerics - plain).max() > 1e-4  # the rounding did change something
