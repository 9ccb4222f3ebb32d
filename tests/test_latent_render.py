"""The latent family's decoder (``kancoin.nets.latent.render``): numpy arithmetic whose bits
do not depend on the machine, the thread count or the chunking, checked against independent
computations (decimal exp, the numba decoding kernels of the KAN family)."""

from __future__ import annotations

import decimal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kancoin.codec.decode import weights
from kancoin.format.container import read_bytes
from kancoin.nets.kan import kernels_decode
from kancoin.nets.kan.tables import grid_position, power_matrix_f32
from kancoin.nets.latent import render as R

GOLDEN = Path(__file__).parent / "golden"


def _exact_exp32(x: float) -> np.float32:
    """exp(x) to 40 digits (decimal: software arithmetic), then to float32."""
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        return np.float32(float(decimal.Decimal(float(x)).exp()))


def test_exp32_is_correctly_rounded() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-87, 88, 3000), rng.normal(0, 2, 2000)]).astype(np.float32)
    want = np.array([_exact_exp32(v) for v in x])
    # a mismatch would need the true value within 2e-15 of a float32 rounding boundary
    for exp in (R.exp32, R.exp32_basic):
        got = exp(x)
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_exp32_edges_without_warnings() -> None:
    x = np.array([0.0, -0.0, 89.0, 1e30, np.inf, -104.0, -1e30, -np.inf, np.nan], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = R.exp32(x)
        s = R.silu32(-x)
        assert np.array_equal(R.exp32_basic(x), e, equal_nan=True)
    assert list(e[:2]) == [1.0, 1.0]
    assert np.all(np.isinf(e[2:5])) and np.all(e[5:8] == 0) and np.isnan(e[8])
    assert np.all(s[2:4] == 0) and np.isnan(s[4]) and np.isnan(s[8])  # SiLU(−inf): −inf / inf


def test_spline_table_is_the_kernels_table() -> None:
    """The same entries, bit for bit, as the numba ``build_table`` of the KAN decoders."""
    rng = np.random.default_rng(4)
    n_out, n_in, grid, k = 5, 3, 5, 3
    base = rng.normal(size=(n_out, n_in)).astype(np.float32)
    coef = rng.normal(size=(n_out, n_in, grid + k)).astype(np.float32)
    ours = R.spline_table(base, coef, k)  # (I, k + 2, n_int + 1, O)
    theirs = np.zeros((n_in, grid + 2 * k, k + 2, n_out), np.float32)
    kernels_decode.build_table(
        np.ascontiguousarray(base.T), np.ascontiguousarray(coef.transpose(1, 2, 0)),
        power_matrix_f32(k), theirs,
    )  # fmt: skip
    assert np.array_equal(ours[:, :, :-1].transpose(0, 2, 1, 3), theirs)
    assert not ours[:, : k + 1, -1].any()  # past the grid: only the SiLU weight
    assert np.array_equal(ours[:, k + 1, -1], base.T)


@pytest.mark.parametrize("n_out", [6, 12])  # a narrow layer and a wide one (two layouts)
def test_layer_forward_matches_the_kernels(n_out: int) -> None:
    """A cubic layer against the numba decoding forward: equal wherever their exp agree (libm's
    expf is not always correctly rounded), and within float32 rounding everywhere."""
    from kancoin.nets.latent import LatentSpec

    rng = np.random.default_rng(5)
    spec = LatentSpec(widths=(4, n_out, 3), height=8, width=8)
    n_in, k = 4, 3
    base = rng.normal(size=(n_out, n_in)).astype(np.float32)
    coef = rng.normal(size=(n_out, n_in, spec.grid_size + k)).astype(np.float32)
    bias = rng.normal(size=n_out).astype(np.float32)
    x = rng.uniform(-3.5, 3.5, (5000, n_in)).astype(np.float32)  # inside and outside the grid
    layer = R.Layer.build(base, coef, bias, k, len(x))
    ours = R.layer_forward(np.ascontiguousarray(x.T), layer, spec).T
    table = np.zeros((n_in, spec.grid_size + 2 * k, k + 2, n_out), np.float32)
    kernels_decode.build_table(
        np.ascontiguousarray(base.T), np.ascontiguousarray(coef.transpose(1, 2, 0)),
        power_matrix_f32(k), table,
    )  # fmt: skip
    g0, inv_h = grid_position(spec.grid_size, k, spec.grid_range)
    theirs = np.empty((len(x), n_out), np.float32)
    kernels_decode.kan_forward_cubic(x, table, g0, inv_h, theirs, 1)
    theirs += bias
    assert np.allclose(ours, theirs, rtol=0, atol=1e-5)
    assert np.mean(ours == theirs) > 0.99


@pytest.mark.parametrize(
    "name", ["tiny_latent.kc", "tiny_latent_arm.kc", "tiny_latent_mlp.kc", "tiny_latent_v7.kc",
             "tiny_latent_v6.kc", "tiny_latent_mlp_v9.kc"],
)  # fmt: skip
def test_render_does_not_depend_on_threads_or_chunks(name: str) -> None:
    header, q = read_bytes((GOLDEN / name).read_bytes())
    arrays = weights(header, q)
    one = R.render(header.spec, arrays, threads=1)
    for chunk, threads in ((1 << 16, 3), (100, 2), (1, 1)):  # 100: two rows a pass
        assert np.array_equal(R.render(header.spec, arrays, chunk, threads), one)


def test_dense_layer_is_float32_in_input_order() -> None:
    """The MLP layer: each output the float32 sum of w·x in input order, then the bias
    (computed apart, one pixel at a time), near the float64 product; GELU in a hidden layer
    (torch's tanh form in float64)."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 7)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    x = rng.normal(size=(7, 200)).astype(np.float32)
    for hidden in (False, True):
        ours = R.dense_forward(x, R.Dense(w[:, :, None], b.reshape(-1, 1), hidden))
        want = np.empty((5, 200), np.float32)
        for j in range(200):
            for o in range(5):
                acc = np.float32(w[o, 0] * x[0, j])
                for i in range(1, 7):
                    acc = np.float32(acc + np.float32(w[o, i] * x[i, j]))
                want[o, j] = np.float32(acc + b[o])
        if hidden:  # the pre-activations exactly, then GELU (its float32 form, near float64)
            pre = torch.from_numpy(want.astype(np.float64))
            want = F.gelu(pre, approximate="tanh").numpy().astype(np.float32)
            assert np.allclose(ours, want, rtol=0, atol=2e-6)
            assert np.array_equal(ours, R.gelu32(R.dense_forward(x, R.Dense(
                w[:, :, None], b.reshape(-1, 1), False))))  # fmt: skip
        else:
            assert np.array_equal(ours, want)
        ref = w.astype(np.float64) @ x + b[:, None]
        ref = F.gelu(torch.from_numpy(ref), approximate="tanh").numpy() if hidden else ref
        assert np.allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_latent.kc", "tiny_latent_mlp.kc"])
def test_a_latent_decode_loads_neither_torch_nor_numba(name: str) -> None:
    code = (
        "import sys; import kancoin;"
        f"kancoin.decode(open({str(GOLDEN / name)!r}, 'rb').read());"
        "print(sorted(m for m in ('torch', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exp32_takes_the_basic_exp_next_to_a_rounding_midpoint(monkeypatch) -> None:
    """A library exp whose float64 value sits next to a float32 midpoint (where its last bit
    could round either way) is overruled by the basic exp; elsewhere both give the same
    float32."""
    rng = np.random.default_rng(6)
    x = rng.uniform(-80, 80, 20000).astype(np.float32)
    assert np.array_equal(R.exp32(x), R.exp32_basic(x))
    # a library exp that returns float32 midpoints: every value must come from the basic exp
    def midpoints(v: np.ndarray) -> np.ndarray:
        bits = R.exp32_basic(v).astype(np.float64).view(np.int64)
        return (bits | (1 << 28)).view(np.float64)

    monkeypatch.setattr(R.np, "exp", midpoints)
    assert np.array_equal(R.exp32(x), R.exp32_basic(x))


@pytest.mark.parametrize("order", [3, 2])
def test_numba_and_numpy_synthesis_agree_bit_for_bit(order: int, monkeypatch) -> None:
    """The numba synthesis (used where numba is loaded) and the numpy one (a decode process)
    give the same float32 outputs, on values inside and outside the grid and past exp's
    range: a file decodes to the same pixels in either process."""
    from kancoin.nets.latent import LatentSpec

    rng = np.random.default_rng(7)
    spec = LatentSpec(widths=(5, 12, 3), height=8, width=8, spline_order=order)
    layers = []
    for n_in, n_out in spec.layer_dims():
        base = rng.normal(size=(n_out, n_in)).astype(np.float32)
        coef = rng.normal(size=(n_out, n_in, spec.grid_size + order)).astype(np.float32)
        bias = rng.normal(size=n_out).astype(np.float32)
        layers.append(R.Layer.build(base, coef, bias, order, 4000))
    x = rng.uniform(-4, 4, (5, 4000)).astype(np.float32)
    x[:, :8] = [90.0, -90.0, 1e30, -1e30, 0.0, -0.0, 2.0, -2.0]  # edges
    ours = R.synthesize(spec, layers, x)
    monkeypatch.setattr(R, "KERNELS", "numba")
    kernels = R.numba_kernels()
    assert kernels is not None
    theirs = R.synthesize(spec, layers, x, kernels)
    assert np.array_equal(ours, theirs, equal_nan=True)
    assert np.isfinite(ours[:, 8:]).all()


def test_extreme_values_decode_without_warnings(monkeypatch) -> None:
    """Grids and weights at float32's edges (a hostile file's, within the format) give IEEE
    results and the same uint8 pixels on both paths, no warning on any thread."""
    header, q = read_bytes((GOLDEN / "tiny_latent.kc").read_bytes())
    arrays = [a.copy() for a in weights(header, q)]
    first = header.spec.first_grid
    arrays[first][:] = 3e38
    arrays[first + 1][:] = -3e38
    arrays[-3][:] = 1e38  # a synthesis weight tensor
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kernels in ("numpy", "numba"):
            monkeypatch.setattr(R, "KERNELS", kernels)
            for threads in (1, 2):
                seen.append(R.render(header.spec, arrays, threads=threads))
    assert seen[0].shape == (40, 48, 3)
    assert all(np.array_equal(px, seen[0]) for px in seen)
