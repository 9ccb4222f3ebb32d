"""The KAN layer: basis vs a slow Cox–de Boor reference; fused / dense / reference agree."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kancoin.kan import (
    KAN,
    KANLinear,
    bspline_basis_dense,
    bspline_basis_reference,
    knot_vector,
)


def cox_de_boor(x: float, c: int, k: int, knots: list[float]) -> float:
    """Textbook recursion, one basis at one point, in float64 (the slow reference)."""
    if k == 0:
        return 1.0 if knots[c] <= x < knots[c + 1] else 0.0
    left = (x - knots[c]) / (knots[c + k] - knots[c]) * cox_de_boor(x, c, k - 1, knots)
    right = (knots[c + k + 1] - x) / (knots[c + k + 1] - knots[c + 1])
    return left + right * cox_de_boor(x, c + 1, k - 1, knots)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("grid", [1, 5, 34])
def test_basis_matches_cox_de_boor(k: int, grid: int) -> None:
    torch.manual_seed(k * 100 + grid)
    x = torch.rand(60, 1) * 3.0 - 1.5  # beyond the extended grid on both sides too
    knots = knot_vector(grid, k, (-1.0, 1.0)).double().tolist()
    slow = torch.tensor(
        [[cox_de_boor(float(v), c, k, knots) for c in range(grid + k)] for v in x[:, 0]],
        dtype=torch.float64,
    )
    for fn in (bspline_basis_reference, bspline_basis_dense):
        exact = fn(x.double(), grid, k, (-1.0, 1.0))[:, 0, :]
        assert torch.allclose(exact, slow, atol=1e-12), fn.__name__  # same function
        fast = fn(x, grid, k, (-1.0, 1.0))[:, 0, :].double()
        # float32: the position in the grid carries ~1e-6 rounding
        assert torch.allclose(fast, slow, atol=3e-6), (fn.__name__, (fast - slow).abs().max())


def test_basis_is_partition_of_unity_inside_grid() -> None:
    x = torch.linspace(-1, 0.999, 101).unsqueeze(1)
    basis = bspline_basis_dense(x, 7, 3, (-1.0, 1.0))
    assert torch.allclose(basis.sum(-1), torch.ones(101, 1), atol=1e-6)


def _random_kan(widths, grid, k, seed=0) -> KAN:
    torch.manual_seed(seed)
    model = KAN(widths, grid, k)
    with torch.no_grad():
        for layer in model.layers:
            layer.spline_weight.normal_(0, 0.2)
            layer.spline_scaler.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("grid", [3, 17])
def test_fast_paths_equal_reference_with_gradients(k: int, grid: int) -> None:
    """fused and dense (float32) against the Cox–de Boor reference evaluated in float64."""
    model = _random_kan((2, 6, 5, 3), grid, k, seed=grid + k)
    x = torch.rand(3000, 2) * 2.6 - 1.3  # includes points outside the extended grid
    weights = torch.randn(3000, 3)

    def run(backend: str, dtype: torch.dtype):
        m = copy.deepcopy(model).to(dtype)
        m.set_backend(backend)
        xin = x.to(dtype).clone().requires_grad_(True)
        y = m(xin)
        (y * weights.to(dtype)).sum().backward()
        grads = [p.grad.double() for p in m.parameters()] + [xin.grad.double()]
        return y.detach().double(), grads

    y_ref, g_ref = run("reference", torch.float64)

    def errors(backend: str) -> list[float]:
        y, grads = run(backend, torch.float32)
        out = [float((y - y_ref).abs().max() / y_ref.abs().max())]
        return out + [
            float((g - gr).abs().max() / (gr.abs().max() + 1e-12))
            for g, gr in zip(grads, g_ref, strict=True)
        ]

    # Three layers of random coefficients amplify float32 rounding: allow what float32
    # efficient-kan itself shows against float64, and at least 1e-5.
    ref32 = errors("reference")
    # Both fast paths locate x by its position in the grid (one rounding) instead of by
    # differences to every knot; through three random layers that can cost a few times the
    # reference's own float32 error. The single-layer test below holds them to 1e-5.
    for backend, factor in (("fused", 10), ("dense", 10)):
        for i, (err, err_ref) in enumerate(zip(errors(backend), ref32, strict=True)):
            assert err <= max(1e-5, factor * err_ref), (backend, i, err, err_ref)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_single_layer_equals_float64_reference_to_1e_5(k: int) -> None:
    torch.manual_seed(k)
    layer = KANLinear(12, 12, grid_size=34, spline_order=k)
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.3)
    x = torch.rand(4000, 12) * 2.4 - 1.2
    layer.backend = "reference"
    truth = copy.deepcopy(layer).double()(x.double())
    for backend in ("dense", "fused"):
        layer.backend = backend
        y = layer(x).double()
        assert (y - truth).abs().max() / truth.abs().max() < 1e-5, backend


@pytest.mark.parametrize("n_out", [3, 8, 12, 20, 32, 40])
@pytest.mark.parametrize("input_grad", [True, False])
def test_fused_backward_equals_reference(n_out: int, input_grad: bool) -> None:
    """The cubic backward kernel gives the float64 reference's gradients for every output block
    (4, 8, 16, 32 and 16-blocks past 32, with zero-padded columns), with points outside the grid
    and the batch split into chunks and blocks (9000 samples: a partial last block)."""
    torch.manual_seed(n_out)
    layer = KANLinear(7, n_out, grid_size=11, spline_order=3)
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.3)
        layer.spline_scaler.uniform_(0.5, 1.5)
    x = torch.rand(9000, 7) * 3.4 - 1.7  # the extended grid ends at +-1.55
    weights = torch.randn(9000, n_out)

    def grads(backend: str, dtype: torch.dtype) -> list[torch.Tensor]:
        m = copy.deepcopy(layer).to(dtype)
        m.backend = backend
        xin = x.to(dtype).clone().requires_grad_(input_grad)
        (m(xin) * weights.to(dtype)).sum().backward()
        out = [p.grad.double() for p in m.parameters()]
        return out + ([xin.grad.double()] if input_grad else [])

    truth = grads("reference", torch.float64)
    for g, gr in zip(grads("fused", torch.float32), truth, strict=True):
        assert (g - gr).abs().max() / gr.abs().max() < 1e-5


def test_fused_forward_is_deterministic_across_thread_counts() -> None:
    import numba

    model = _random_kan((2, 12, 12, 3), 20, 3)
    x = torch.rand(50_000, 2) * 2 - 1
    outs = []
    for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(n)
        with torch.no_grad():
            outs.append(model(x).numpy())
        with torch.no_grad():
            outs.append(model(x).numpy())
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])


def test_parameter_count_formula() -> None:
    from kancoin.models import build_model, export_tensors
    from kancoin.spec import ModelSpec

    spec = ModelSpec("kan", (2, 12, 9, 3), grid_size=11, spline_order=3)
    model = build_model(spec)
    edges = 2 * 12 + 12 * 9 + 9 * 3
    # training parameters: base weight, G + k coefficients and a scale per edge
    assert sum(p.numel() for p in model.parameters()) == edges * (11 + 3 + 2)
    # stored: the scale is folded into the coefficients
    assert spec.n_params == edges * (11 + 3 + 1)
    assert sum(a.size for a in export_tensors(model, spec)) == spec.n_params


def test_layer_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError):
        KANLinear(2, 3, backend="magic")


@pytest.mark.parametrize("node_bias, first_grid", [(False, None), (True, None), (False, 47)])
def test_render_separable_first_layer_is_bit_exact(node_bias: bool, first_grid) -> None:
    """render() evaluates the first layer once per column and row (W + H points) and adds the
    two terms: the pixels must be those of the per-pixel network, bit for bit, including
    points where the rounding to uint8 is closest to a tie."""
    from kancoin.grid import coordinates
    from kancoin.models import render

    torch.manual_seed(1)
    model = KAN((2, 9, 7, 3), 13, 3, node_bias=node_bias, first_grid_size=first_grid)
    assert model.layer_grids == (first_grid or 13, 13, 13)
    with torch.no_grad():
        for layer in model.layers:
            layer.spline_weight.normal_(0.0, 0.4)
            if node_bias:
                layer.bias.uniform_(-0.2, 0.6)
    model.eval()
    height, width = 37, 53
    coords = coordinates(height, width)
    assert model.grid_separable()
    with torch.no_grad():
        direct = model(coords)
    expected = torch.round(direct.clamp(0, 1) * 255).to(torch.uint8).reshape(height, width, 3)
    for chunk in (1 << 16, 100):  # one block, and blocks of one row
        got = render(model, height, width, chunk=chunk)
        assert torch.equal(got, expected)
    # the float outputs themselves agree bit for bit (as render computes them: under no_grad,
    # so through the decoding kernel)
    with torch.no_grad():
        tx, ty = model.grid_terms(coords[:width, 0], coords[::width, 1])
        h = (ty[:, None, :] + tx[None, :, :]).reshape(-1, tx.shape[1])
        assert torch.equal(model.forward_from_first(h), direct)


def test_first_layer_grid_fast_paths_equal_reference() -> None:
    """A first layer with its own (fine) grid: fused, dense and Cox–de Boor agree, with
    points outside the grid."""
    x = torch.rand(500, 2) * 2.6 - 1.3
    outs = []
    for backend in ("fused", "dense", "reference"):
        torch.manual_seed(3)
        model = KAN((2, 5, 3), 7, 3, backend=backend, first_grid_size=61)
        with torch.no_grad():
            for layer in model.layers:
                layer.spline_weight.normal_(0.0, 0.3)
        outs.append(model(x).detach())
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1], outs[2], rtol=1e-5, atol=1e-5)


def test_render_falls_back_where_not_separable() -> None:
    dense = KAN((2, 4, 3), 5, 3, backend="dense")
    assert not dense.grid_separable()  # not the fused kernel: sums in another order
    assert not KAN((2, 4, 3), 5, 3, basis="rbf").grid_separable()
    # the generic kernel adds row by row: not separable bit for bit
    assert not KAN((2, 4, 3), 5, 2).grid_separable()
    assert KAN((2, 4, 3), 5, 3).grid_separable()


def test_pixel_grid_training_path_matches_per_sample() -> None:
    """fit's separable path (first-layer terms on W + H coordinates, gathered per pixel)
    gives the per-sample forward bit for bit and the same gradients (up to summation order)."""
    from kancoin.grid import coordinates

    height, width = 23, 31
    coords = coordinates(height, width)
    xs, ys = coords[:width, 0].contiguous(), coords[::width, 1].contiguous()
    idx = torch.randint(0, height * width, (3000,), generator=torch.Generator().manual_seed(2))
    grads = []
    outs = []
    for separable in (False, True):
        torch.manual_seed(4)
        model = KAN((2, 6, 5, 3), 9, 3, node_bias=True, first_grid_size=29)
        with torch.no_grad():
            for layer in model.layers:
                layer.spline_weight.normal_(0.0, 0.3)
                layer.spline_scaler.uniform_(0.5, 1.5)
        if separable:
            tx, ty = model.grid_terms(xs, ys)
            out = model.forward_from_first(tx[idx % width] + ty[idx // width])
        else:
            out = model(coords[idx])
        (out * torch.linspace(-1, 1, 3)).sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert torch.equal(outs[0], outs[1])
    for name, g in grads[0].items():
        scale = g.abs().max().clamp_min(1e-6)
        assert (grads[1][name] - g).abs().max() / scale < 1e-5, name


def test_grid_sum_equals_torch_gather_with_gradients() -> None:
    """The fused first-layer gather: the same sums bit for bit, the same gradients."""
    from kancoin.kan import grid_sum

    torch.manual_seed(0)
    width, height, n_out = 37, 23, 5
    tx = torch.randn(width, n_out, requires_grad=True)
    ty = torch.randn(height, n_out, requires_grad=True)
    idx = torch.randint(0, width * height, (9000,))  # more than one chunk
    weights = torch.randn(9000, n_out)
    fused = grid_sum(tx, ty, idx)
    plain = tx[idx % width] + ty[idx // width]
    assert torch.equal(fused, plain)
    g_fused = torch.autograd.grad((fused * weights).sum(), (tx, ty))
    # truth in float64: each gradient sums ~250-400 terms of size ~1, so float32 sums in
    # different orders (chunks, threads) differ by up to a few 1e-5
    t64 = [t.detach().double().requires_grad_(True) for t in (tx, ty)]
    plain64 = t64[0][idx % width] + t64[1][idx // width]
    g_truth = torch.autograd.grad((plain64 * weights.double()).sum(), t64)
    for a, b in zip(g_fused, g_truth, strict=True):
        assert (a.double() - b).abs().max() < 2e-5 * b.abs().max()


@pytest.mark.parametrize("n_out", [17, 20, 31])
def test_padded_outputs_same_bits_and_gradients(monkeypatch, n_out: int) -> None:
    """Layers run at a padded output width (zero columns) give the same outputs, bit for bit
    (files decode as before), and the same gradients."""
    from kancoin import kan

    assert kan.padded_outputs(n_out) == 32
    torch.manual_seed(n_out)
    layer = KANLinear(6, n_out, grid_size=11, spline_order=3)
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.3)
    x = torch.rand(5000, 6) * 3.4 - 1.7
    weights = torch.randn(5000, n_out)

    def run():
        m = copy.deepcopy(layer)
        xin = x.clone().requires_grad_(True)
        with torch.no_grad():
            y_eval = m(x)
        y = m(xin)
        (y * weights).sum().backward()
        return y_eval, y.detach(), [p.grad for p in m.parameters()] + [xin.grad]

    padded = run()
    monkeypatch.setattr(kan, "padded_outputs", lambda o: o)
    plain = run()
    assert torch.equal(padded[0], plain[0]) and torch.equal(padded[1], plain[1])
    for a, b in zip(padded[2], plain[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fast_exp_matches_libm() -> None:
    """The training forward's exp: within 2e-7 of float64 exp over float32's whole normal range,
    NaN in -> NaN out, clamped (finite) past it."""
    from numba import njit

    from kancoin._kernels import _fast_exp

    @njit
    def fill(x, out):
        for j in range(x.shape[0]):
            out[j] = _fast_exp(x[j])

    x = np.concatenate([np.linspace(-87, 88, 200_001), [0.0, -1e-8, 1e-8]]).astype(np.float32)
    out = np.empty_like(x)
    fill(x, out)
    truth = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - truth) / truth) < 2e-7
    edge = np.array([np.nan, -1000.0, 1000.0, -np.inf, np.inf], np.float32)
    out = np.empty_like(edge)
    fill(edge, out)
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:])) and out[1] < 1e-37 < 1e38 < out[2]


def test_training_forward_close_to_decoding_forward() -> None:
    """Training (fast exp, kept 1 + exp(-x)) and decoding (libm exp) forwards agree to ~1e-7;
    only the decoding one is pinned bit for bit (golden files). Under no_grad a layer whose
    weights require grad (the encoder's renders) takes the decoding kernel."""
    from kancoin import _kernels
    from kancoin.kan import _grid_position, padded_outputs, spline_table

    torch.manual_seed(5)
    layer = KANLinear(9, 20, grid_size=11, spline_order=3)
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.3)
    x = torch.rand(6000, 9) * 3.4 - 1.7  # some outside the grid
    with torch.no_grad():
        decoded = layer(x)
        coef = layer.scaled_spline_weight()
        table = spline_table(layer.base_weight, coef, 3, padded_outputs(20)).numpy()
    exact = np.empty((6000, 20), np.float32)
    g0, inv_h = _grid_position(11, 3, layer.grid_range)
    no_den = np.empty((0, 0), np.float32)
    _kernels.kan_forward_cubic(x.numpy(), table, g0, inv_h, exact, 1, no_den)
    assert np.array_equal(decoded.numpy(), exact)
    trained = layer(x.clone().requires_grad_(True)).detach()
    assert (trained - decoded).abs().max() / decoded.abs().max() < 1e-6
    assert not torch.equal(trained, decoded)  # two kernels: the comparison above means something


def test_decoder_takes_the_decoding_kernel(monkeypatch) -> None:
    """decode_bytes never runs the training forward (it would keep 1 + exp(-x) and use the
    fast exp, and files would no longer decode to the same bits)."""
    from pathlib import Path

    from kancoin import _kernels
    from kancoin.decode import decode_bytes

    seen = []
    forward = _kernels.kan_forward_cubic

    def spy(x, table, g0, inv_h, y, nchunks, den):
        seen.append(den.shape)
        return forward(x, table, g0, inv_h, y, nchunks, den)

    monkeypatch.setattr(_kernels, "kan_forward_cubic", spy)
    decode_bytes((Path(__file__).parent / "golden" / "tiny.kc").read_bytes())
    assert seen and all(shape == (0, 0) for shape in seen)


def test_cubic_kernels_refuse_mismatched_shapes() -> None:
    """The kernels index without bounds checks, so shapes that would overrun them raise."""
    from kancoin import _kernels

    x = np.zeros((10, 3), np.float32)
    table = np.zeros((3, 14, 5, 4), np.float32)
    parts = np.zeros((1, 3, 14, 5, 4), np.float32)
    wide_gy = np.zeros((10, 5), np.float32)  # more columns than the table
    with pytest.raises(ValueError):
        _kernels.kan_backward_cubic(
            x, x + 1, wide_gy, table, -1.0, 5.0, x.copy(), parts, True, (np.float32(0),) * 4
        )
    with pytest.raises(ValueError):  # output block wider than the table
        _kernels.kan_backward_cubic(
            x, x + 1, wide_gy[:, :4], table, -1.0, 5.0, x.copy(), parts, True,
            (np.float32(0),) * 8,
        )  # fmt: skip
    with pytest.raises(ValueError):
        _kernels.kan_forward_cubic(x, table, -1.0, 5.0, wide_gy, 1, np.zeros((0, 0), np.float32))


@pytest.mark.parametrize("k", [2, 3])
def test_fused_training_survives_nan_and_inf_inputs(k: int) -> None:
    """A diverged fit feeds NaN / inf into a layer: training forward and backward must give NaN
    where it came from, not index the table with int(NaN) (it crashed the process once)."""
    torch.manual_seed(k)
    layer = KANLinear(4, 20, grid_size=11, spline_order=k)
    x = torch.rand(3000, 4) * 2 - 1
    x[::3, 0] = float("nan")
    x[1::3, 1] = float("inf")
    x[2::3, 2] = float("-inf")
    xin = x.clone().requires_grad_(True)
    y = layer(xin)
    y.sum().backward()
    assert torch.isnan(y[::3]).all()
    clean = torch.rand(50, 4) * 2 - 1  # the same layer still works on finite inputs
    assert torch.isfinite(layer(clean.requires_grad_(True))).all()
    with torch.no_grad():
        assert torch.isnan(layer(x)[::3]).all()
