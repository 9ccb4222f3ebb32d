"""The MLP synthesis in fixed point (``kancoin.nets.latent.fixed``): its products are exact
(checked against integer arithmetic), so its bits do not depend on BLAS, threads or chunks; its
GELU table is GELU (checked against torch in float64); hostile values stay finite."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from kancoin.codec.decode import weights
from kancoin.format.container import read_bytes
from kancoin.nets.latent import fixed as X
from kancoin.nets.latent import render as R

GOLDEN = Path(__file__).parent / "golden"


def test_gelu_table_is_gelu() -> None:
    frac = 16
    table = X.gelu_table(frac)
    n = len(table)
    assert n == int(X.FIXED_HI - X.FIXED_LO) * (1 << X.FIXED_TABLE_BITS) + 1
    x = X.FIXED_LO + np.arange(n) / float(1 << X.FIXED_TABLE_BITS)
    # the whole table by the formula (the table takes GELU(x) = x past GELU_IS_X)
    u = (x * x * x * 0.044715 + x) * (2.0 * np.sqrt(2.0 / np.pi))
    assert np.array_equal(table, np.rint(x / (1.0 + R.exp64_basic(-u)) * 2.0**frac))
    # and torch's GELU, float64, computed apart: within the rounding to 2^−F
    theirs = F.gelu(torch.from_numpy(x), approximate="tanh").numpy() * 2.0**frac
    assert np.abs(table - theirs).max() <= 0.5 + 1e-6


def _layer(rng, n_out: int, n_in: int, hidden: bool, bound: float, scale: float = 1.0):
    w = (rng.standard_normal((n_out, n_in)) * scale / np.sqrt(n_in)).astype(np.float32)
    b = (rng.standard_normal(n_out) * scale).astype(np.float32)
    return w, b, X.FixedDense.build(w, b, hidden, bound, 16)


@pytest.mark.parametrize("n_in, scale", [(7, 1.0), (32, 1e-6), (32, 1e6), (4095, 1.0)])
def test_products_are_exact_at_the_bounds(n_in: int, scale: float) -> None:
    """Inputs at ±bound (the largest a layer sees): the float64 product (BLAS, 4 threads) is
    the exact sum, computed apart in Python integers."""
    rng = np.random.default_rng(n_in)
    bound = X.FIXED_HI
    _, _, layer = _layer(rng, 32, n_in, True, bound, scale)
    top = int(bound * 2**16)
    x = rng.choice([-top, top], size=(n_in + 1, 6)).astype(np.float64)
    x[-1] = 1
    with threadpool_limits(4, user_api="blas"):
        got = layer.matrix @ x
    ratios = [v.as_integer_ratio() for v in layer.matrix.ravel().tolist()]
    den = max(d for _, d in ratios)  # powers of two: every entry is k / den
    ints = np.array([n * (den // d) for n, d in ratios], dtype=object).reshape(layer.matrix.shape)
    exact = ints @ x.astype(np.int64).astype(object)  # Python integers: exact
    assert all(abs(v) < 2**52 for v in exact.ravel())
    assert [float(v) / den for v in exact.ravel()] == got.ravel().tolist()


def test_fixed_synthesis_does_not_depend_on_blas_threads() -> None:
    rng = np.random.default_rng(0)
    layers = [_layer(rng, 32, 7, True, X.FIXED_FEATURE_BOUND)[2],
              _layer(rng, 32, 32, True, X.FIXED_HI)[2],
              _layer(rng, 3, 32, False, X.FIXED_HI)[2]]  # fmt: skip
    feats = rng.normal(0, 3, (7, 50_000)).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):
        one = X.fixed_synthesize(layers, feats, 16)
    with threadpool_limits(4, user_api="blas"):
        many = X.fixed_synthesize(layers, feats, 16)
    assert np.array_equal(one, many)


def test_fixed_synthesis_is_the_float_mlp() -> None:
    """Against the MLP in float64 (torch): within the fixed point's and the table's error."""
    rng = np.random.default_rng(1)
    parts = [_layer(rng, 16, 5, True, X.FIXED_FEATURE_BOUND), _layer(rng, 16, 16, True, X.FIXED_HI),
             _layer(rng, 3, 16, False, X.FIXED_HI)]  # fmt: skip
    feats = rng.normal(0, 2, (5, 4000)).astype(np.float32)
    ours = X.fixed_synthesize([p[2] for p in parts], feats, 16)
    x = torch.from_numpy(feats.astype(np.float64))
    for j, (w, b, _) in enumerate(parts):
        w64, b64 = (torch.from_numpy(a.astype(np.float64)) for a in (w, b))
        x = w64 @ x + b64[:, None]
        x = F.gelu(x, approximate="tanh") if j < 2 else x
    assert np.abs(ours - x.numpy()).max() < 1e-3


def test_a_layer_of_zero_weights_keeps_its_bias() -> None:
    """A flat image's synthesis may be all bias: the layer's unit follows the bias too."""
    w = np.zeros((3, 4), np.float32)
    b = np.array([0.25, 0.5, 0.75], np.float32)
    layer = X.FixedDense.build(w, b, False, X.FIXED_HI, 16)
    out = X.fixed_synthesize([layer], np.ones((4, 10), np.float32), 16)
    assert np.array_equal(out, np.repeat(b.astype(np.float64)[:, None], 10, 1))


def test_hostile_values_stay_finite_without_warnings() -> None:
    """Grids at float32's edge, weights and biases at ±1e38 or 1e−38 (what a file can hold);
    features NaN or ±inf: finite outputs, the same at any thread count, no warning."""
    header, q = read_bytes((GOLDEN / "tiny_latent_mlp.kc").read_bytes())
    spec = header.spec
    assert spec.fixed_frac
    arrays = [a.copy() for a in weights(header, q)]
    first = spec.first_grid
    arrays[first][:] = 3e38
    arrays[first + 1][:] = -3e38
    arrays[-4][:] = 1e38  # a weight
    arrays[-3][:] = -1e38  # a bias
    arrays[-2][:] = 1e-38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seen = [R.render(spec, arrays, threads=t) for t in (1, 2)]
    assert np.array_equal(seen[0], seen[1])
    layers = X.fixed_layers(spec, arrays)
    feats = np.array([[np.nan, np.inf, -np.inf, 3e38, -3e38]] * spec.levels, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(X.fixed_synthesize(layers, feats, spec.fixed_frac)).all()


def _with_fixed_frac(data: bytes, value: int) -> bytes:
    """The file with its ``fixed_frac`` field set to ``value`` (CRC recomputed): the field's
    offset counted from docs/format.md's table."""
    import zlib

    from kancoin.format.container import read_bytes as read

    spec = read(data)[0].spec
    fixed = 32 + 8 + 16 + 16 + 2 + 2 + 5 + 1 + 5
    at = fixed + 12 * (len(spec.widths) - 2) + (4 + 8 + 3 + 32 + 3 + 3 + 1 + 5 + 2)
    bits = int.from_bytes(data[:-4], "big")
    n = 8 * (len(data) - 4)
    shift = n - at - 5
    bits = (bits & ~(31 << shift)) | (value << shift)
    body = bits.to_bytes(len(data) - 4, "big")
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_the_field_chooses_the_arithmetic_and_bad_values_are_refused() -> None:
    """The golden MLP file (F = 16) read as F = 0 renders in float32 to nearly the same
    pixels, and as F = 20 too; F = 5 (too coarse) or any F with the KAN synthesis is refused
    with one clear error."""
    from kancoin.codec.decode import decode_bytes
    from kancoin.errors import KancoinError

    data = (GOLDEN / "tiny_latent_mlp.kc").read_bytes()
    ours = decode_bytes(data)
    assert _with_fixed_frac(data, 16) == data  # the offset is the field's
    for frac in (0, 20):
        other = decode_bytes(_with_fixed_frac(data, frac))
        assert other.header.spec.fixed_frac == frac
        diff = np.abs(other.pixels.astype(int) - ours.pixels.astype(int))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.01 * diff.size
    with pytest.raises(KancoinError, match="fixed_frac"):
        decode_bytes(_with_fixed_frac(data, 5))
    kan = (GOLDEN / "tiny_latent.kc").read_bytes()
    with pytest.raises(KancoinError, match="fixed_frac"):
        decode_bytes(_with_fixed_frac(kan, 16))


def test_a_band_stays_within_the_chunk_the_limits_allow() -> None:
    """A row wider than the chunk renders in pieces of it: a render's peak memory (numpy's
    allocations, traced) stays within the chunk times the bytes per pixel the decode limits
    count, beside the grids' interpolated rows and the image."""
    import tracemalloc

    from kancoin.format.limits import decode_cost
    from kancoin.nets.latent import LatentSpec

    spec = LatentSpec((5, 64, 64, 3), height=2, width=6000, context=0, synthesis=1, fixed_frac=16)
    rng = np.random.default_rng(0)
    arrays = [rng.normal(0, 1, s).astype(np.float32) for _, s in spec.tensor_shapes()]
    cost = decode_cost(spec, spec.height, spec.width)
    chunk = 500
    X.gelu_table(16)  # built once per process, outside the bound
    whole = R.render(spec, arrays, chunk=1 << 16, threads=1)
    tracemalloc.start()
    try:
        pieces = R.render(spec, arrays, chunk=chunk, threads=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(pieces, whole)
    # the interpolated rows, the image, every level's column taps (4 indices, 4 weights)
    beside = 4 * spec.height * spec.width * (spec.levels + 1) + 32 * spec.width * spec.levels
    assert peak <= chunk * cost.bytes_per_pixel + beside + (64 << 10)


def test_nested_decodes_give_the_blas_limit_back() -> None:
    """BLAS's thread limit is the process's: nested holds (a decode inside a decode, as the
    grids' decode and the render of one file) keep it at one until the outer ends, then give
    the caller's back."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        with R.one_blas_thread():
            with R.one_blas_thread():
                pass
            inner_done = blas_threads()
        assert all(n == 1 for n in inner_done) and blas_threads() == before
