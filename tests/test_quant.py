"""Uniform quantization: error bounds, searched range never worse than min/max."""

from __future__ import annotations

import numpy as np
import pytest

from kancoin.format.quant import _params, choose_params, dequantize, quantize, quantize_tensor


@pytest.mark.parametrize("bits", [2, 4, 9, 12, 16])
def test_error_within_half_step_on_unclipped_range(bits: int) -> None:
    rng = np.random.default_rng(bits)
    w = rng.normal(size=5000).astype(np.float32)
    qp = _params(float(w.min()), float(w.max()), bits)
    q = quantize(w, qp)
    assert q.max() <= (1 << bits) - 1 and q.dtype == np.uint32
    err = np.abs(dequantize(q, qp) - w)
    assert err.max() <= qp.step / 2 * (1 + 1e-4) + 1e-7


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_searched_range_beats_min_max(bits: int) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, size=5000).astype(np.float32)  # heavy tails: clipping pays
    minmax = _params(float(w.min()), float(w.max()), bits)
    best = choose_params(w, bits)
    err_minmax = np.mean((dequantize(quantize(w, minmax), minmax) - w) ** 2)
    err_best = np.mean((dequantize(quantize(w, best), best) - w) ** 2)
    assert err_best <= err_minmax
    assert err_best < 0.8 * err_minmax


def test_params_are_float32_exact_and_roundtrip() -> None:
    w = np.linspace(-0.3, 0.7, 999, dtype=np.float32)
    q, qp = quantize_tensor(w, 9)
    assert np.float32(qp.lo) == qp.lo and np.float32(qp.step) == qp.step
    assert np.array_equal(quantize(dequantize(q, qp), qp), q)  # dequantized values are fixed points


def test_constant_tensor_and_bad_input() -> None:
    q, qp = quantize_tensor(np.full(10, 0.25, np.float32), 9)
    assert np.allclose(dequantize(q, qp), 0.25)
    with pytest.raises(ValueError):
        choose_params(np.array([1.0, np.nan]), 9)
    with pytest.raises(ValueError):
        choose_params(np.ones(3), 1)


def test_rescale_keeps_the_range_and_picks_enough_bits() -> None:
    from kancoin.format.quant import rescale

    w = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    qp = choose_params(w, 8)
    assert rescale(qp, 1.0).bits == qp.bits and abs(rescale(qp, 1.0).lo - qp.lo) < 1e-6
    span = qp.step * (qp.levels - 1)
    for f in (0.25, 0.5, 0.9, 1.7, 3.0, 10.0):
        r = rescale(qp, f)
        assert r.step == pytest.approx(qp.step * f, rel=1e-6)
        # covers the original range up to half a step at each end, with the fewest bits
        assert r.step * r.levels >= span - 1e-6
        assert r.bits == 2 or r.step * (r.levels // 2) < span
        err = np.mean((dequantize(quantize(w, r), r) - w) ** 2)
        assert err < r.step**2  # a sane quantizer (uniform error is step² / 12)


def test_rescale_refuses_a_step_that_would_clip_at_max_bits() -> None:
    from kancoin.format.quant import MAX_BITS, rescale

    qp = choose_params(np.random.default_rng(4).standard_normal(500).astype(np.float32), 16)
    assert rescale(qp, 1.0).bits == MAX_BITS
    with pytest.raises(ValueError):
        rescale(qp, 0.5)
