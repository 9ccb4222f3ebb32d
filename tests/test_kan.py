"""The KAN layer: basis vs a slow Cox–de Boor reference; fused / dense / reference agree."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kancoin.nets.kan.layers import KANLinear
from kancoin.nets.kan.network import KAN
from kancoin.nets.kan.splines import bspline_basis_dense, bspline_basis_reference, knot_vector


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
    # Gradients (every index past 0) are float32 sums over the 3000 samples, which the fast
    # paths add in a different order (blocks, threads): their worst case is about n * 2**-24
    # = 1.8e-4 of the largest term, so they get 1e-4; a wrong basis or knot is off by > 1e-2.
    for backend, factor in (("fused", 10), ("dense", 10)):
        for i, (err, err_ref) in enumerate(zip(errors(backend), ref32, strict=True)):
            floor = 1e-5 if i == 0 else 1e-4
            assert err <= max(floor, factor * err_ref), (backend, i, err, err_ref)


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
        with torch.no_grad():  # training (autograd) and decoding evaluations
            outs = {"forward": layer(x), "infer": layer.infer(x)}
        for name, y in outs.items():
            err = (y.double() - truth).abs().max() / truth.abs().max()
            assert err < 1e-5, (backend, name, float(err))


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
    """Decoding (the bits a file decodes to) and training forwards give the same bits at any
    numba thread count (the batch is split into one chunk per thread)."""
    import numba

    model = _random_kan((2, 12, 12, 3), 20, 3)
    x = torch.rand(50_000, 2) * 2 - 1
    outs: dict[str, list[np.ndarray]] = {"infer": [], "forward": []}
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            for _ in range(2):
                with torch.no_grad():
                    outs["infer"].append(model.infer(x).numpy())
                    outs["forward"].append(model(x).numpy())
    finally:
        numba.set_num_threads(before)
    for name, runs in outs.items():
        for o in runs[1:]:
            assert np.array_equal(o, runs[0]), name


def test_parameter_count_formula() -> None:
    from kancoin.nets import build, export_arrays
    from kancoin.nets.kan import KanSpec

    spec = KanSpec((2, 12, 9, 3), grid_size=11, spline_order=3)
    model = build(spec)
    edges = 2 * 12 + 12 * 9 + 9 * 3
    # training parameters: base weight, G + k coefficients and a scale per edge
    assert sum(p.numel() for p in model.parameters()) == edges * (11 + 3 + 2)
    # stored: the scale is folded into the coefficients
    assert spec.n_params == edges * (11 + 3 + 1)
    assert sum(a.size for a in export_arrays(model, spec)) == spec.n_params


def test_layer_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError):
        KANLinear(2, 3, backend="magic")


@pytest.mark.parametrize("node_bias, first_grid", [(False, None), (True, None), (False, 47)])
def test_render_separable_first_layer_is_bit_exact(node_bias: bool, first_grid) -> None:
    """The family's render evaluates the first layer once per column and row (W + H points)
    and adds the two terms: the pixels must be those of the per-pixel decoding network
    (``infer``), bit for bit, including points where the rounding to uint8 is closest to a
    tie."""
    from kancoin.nets import family
    from kancoin.nets.coords import coordinates

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
        direct = model.infer(coords)
    expected = torch.round(direct.clamp(0, 1) * 255).to(torch.uint8).reshape(height, width, 3)
    for chunk in (1 << 16, 100):  # one block, and blocks of one row
        got = family("kan").render(model, height, width, chunk=chunk)
        assert torch.equal(got, expected)
    # the float outputs themselves agree bit for bit (as render computes them: the decoding
    # evaluation of the first layer's terms and of the rest)
    with torch.no_grad():
        tx, ty = model.grid_terms_infer(coords[:width, 0], coords[::width, 1])
        h = (ty[:, None, :] + tx[None, :, :]).reshape(-1, tx.shape[1])
        assert torch.equal(model.infer_from_first(h), direct)


def test_first_layer_grid_fast_paths_equal_reference() -> None:
    """A first layer with its own (fine) grid: fused (training and decoding), dense and
    Cox–de Boor agree, with points outside the grid."""
    x = torch.rand(500, 2) * 2.6 - 1.3
    outs = {}
    for backend in ("fused", "dense", "reference"):
        torch.manual_seed(3)
        model = KAN((2, 5, 3), 7, 3, backend=backend, first_grid_size=61)
        with torch.no_grad():
            for layer in model.layers:
                layer.spline_weight.normal_(0.0, 0.3)
        outs[backend] = model(x).detach()
        if backend == "fused":
            with torch.no_grad():
                outs["fused infer"] = model.infer(x)
    for name in ("fused", "fused infer", "dense"):
        torch.testing.assert_close(outs[name], outs["reference"], rtol=1e-5, atol=1e-5)


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
    from kancoin.nets.coords import coordinates

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
    from kancoin.nets.kan.fused import grid_sum

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
    """Layers run at a padded output width (zero columns) give the same outputs, bit for bit,
    decoding (files decode as before) and training, and the same gradients."""
    from kancoin.nets.kan import fused, layers, splines

    assert splines.padded_outputs(n_out) == 32
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
            y_eval = m.infer(x)
        y = m(xin)
        (y * weights).sum().backward()
        return y_eval, y.detach(), [p.grad for p in m.parameters()] + [xin.grad]

    padded = run()
    seen = []  # the decoding (layers) and training (fused) evaluations each pick their width

    def unpadded(module: str):
        return lambda o: seen.append(module) or o

    monkeypatch.setattr(layers, "padded_outputs", unpadded("layers"))
    monkeypatch.setattr(fused, "padded_outputs", unpadded("fused"))
    plain = run()
    assert set(seen) == {"layers", "fused"}
    assert torch.equal(padded[0], plain[0]) and torch.equal(padded[1], plain[1])
    for a, b in zip(padded[2], plain[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fast_exp_matches_libm() -> None:
    """The training forward's exp: within 2e-7 of float64 exp over float32's whole normal range,
    NaN in -> NaN out, clamped (finite) past it."""
    from numba import njit

    from kancoin.nets.kan.kernels_train import _fast_exp

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


def _cubic_table(layer: KANLinear) -> tuple[np.ndarray, float, float]:
    """The cubic layer's kernel table (at the width the layer runs it) and grid position."""
    from kancoin.nets.kan.splines import grid_position, padded_outputs, spline_table

    with torch.no_grad():
        coef = layer.scaled_spline_weight()
        pad = padded_outputs(layer.out_features)
        table = spline_table(layer.base_weight, coef, 3, pad).numpy()
    g0, inv_h = grid_position(layer.grid_size, 3, layer.grid_range)
    return table, g0, inv_h


def _decoding_kernel(model: KAN, x: torch.Tensor) -> np.ndarray:
    """The network evaluated layer by layer with the decoding kernel itself (one chunk)."""
    from kancoin.nets.kan import kernels_decode

    h = x.numpy()
    for layer in model.layers:
        table, g0, inv_h = _cubic_table(layer)
        y = np.empty((h.shape[0], layer.out_features), np.float32)
        kernels_decode.kan_forward_cubic(np.ascontiguousarray(h), table, g0, inv_h, y, 1)
        h = y
    return h


def test_training_forward_close_to_decoding_forward() -> None:
    """A layer's ``infer`` is the decoding kernel (libm exp) and its ``forward`` the training
    kernel (fast exp, keeps 1 + exp(-x)), each bit for bit, whatever the grad mode: the caller
    chooses. The two agree to ~1e-7; only the decoding one is pinned bit for bit (golden
    files)."""
    from kancoin.nets.kan import kernels_decode, kernels_train

    torch.manual_seed(5)
    layer = KANLinear(9, 20, grid_size=11, spline_order=3)
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.3)
    x = torch.rand(6000, 9) * 3.4 - 1.7  # some outside the grid
    table, g0, inv_h = _cubic_table(layer)
    assert table.shape[3] == 32  # run padded: the kernels store only the real 20 outputs
    decoding = np.empty((6000, 20), np.float32)
    kernels_decode.kan_forward_cubic(x.numpy(), table, g0, inv_h, decoding, 1)
    training = np.empty((6000, 20), np.float32)
    den = np.empty((6000, 9), np.float32)
    kernels_train.kan_forward_cubic_train(x.numpy(), table, g0, inv_h, training, 1, den)
    one_plus_exp = 1.0 + np.exp(-x.double().numpy())
    assert np.max(np.abs(den - one_plus_exp) / one_plus_exp) < 3e-7  # kept for the backward

    with torch.no_grad():
        decoded = layer.infer(x)
        trained_no_grad = layer(x)  # still the training evaluation: no_grad does not choose
    trained = layer(x.clone().requires_grad_(True))
    assert trained.grad_fn is not None
    assert np.array_equal(decoded.numpy(), decoding)
    assert np.array_equal(trained.detach().numpy(), training)
    assert torch.equal(trained_no_grad, trained.detach())
    assert (trained.detach() - decoded).abs().max() / decoded.abs().max() < 1e-6
    assert not torch.equal(trained.detach(), decoded)  # two kernels: the above means something


def test_network_infer_and_render_are_the_decoding_kernel() -> None:
    """``KAN.infer`` and the family's render (separable first layer) give the decoding
    kernel's bits; the training forward ``model(x)`` is within ~1e-6 of it, not equal."""
    from kancoin.nets import family
    from kancoin.nets.coords import coordinates, to_uint8

    model = _random_kan((2, 9, 20, 3), 11, 3, seed=6)
    x = torch.rand(5000, 2) * 2.6 - 1.3
    expected = _decoding_kernel(model, x)
    with torch.no_grad():
        decoded = model.infer(x)
    trained = model(x).detach()
    assert np.array_equal(decoded.numpy(), expected)
    # each layer ~1e-7 apart (the layer test above); three random layers amplify it
    assert (trained - decoded).abs().max() / decoded.abs().max() < 5e-6
    assert not torch.equal(trained, decoded)
    height, width = 29, 41
    pixels = to_uint8(torch.from_numpy(_decoding_kernel(model, coordinates(height, width))))
    rendered = family("kan").render(model, height, width)
    assert torch.equal(rendered, pixels.reshape(height, width, 3))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_other_orders_train_and_decode_on_one_kernel(k: int) -> None:
    """Non-cubic B-spline layers have one forward kernel: ``infer`` and ``forward`` agree bit
    for bit."""
    torch.manual_seed(k)
    layer = KANLinear(5, 7, grid_size=9, spline_order=k)
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.3)
    x = torch.rand(3000, 5) * 3 - 1.5
    with torch.no_grad():
        decoded = layer.infer(x)
    assert torch.equal(layer(x.clone().requires_grad_(True)).detach(), decoded)


def test_decoder_keeps_nothing_for_a_backward(monkeypatch) -> None:
    """decode_bytes evaluates the network through the decoding kernel only: no training kernel
    (it would keep 1 + exp(-x) and use the fast exp, and files would no longer decode to the
    same bits), no autograd Function, nothing saved for a backward."""
    from pathlib import Path

    from kancoin.codec.decode import decode_bytes
    from kancoin.nets.kan import fused, kernels_decode, kernels_train

    calls: list[str] = []
    decode_forward = kernels_decode.kan_forward_cubic

    def spy(x, table, g0, inv_h, y, nchunks):
        calls.append("decode")
        return decode_forward(x, table, g0, inv_h, y, nchunks)

    def forbidden(name: str):
        def fail(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"the decoder ran {name}")

        return fail

    monkeypatch.setattr(kernels_decode, "kan_forward_cubic", spy)
    for name in ("kan_forward_cubic_train", "kan_backward_cubic", "kan_backward"):
        monkeypatch.setattr(kernels_train, name, forbidden(name))
    for cls in (fused._FusedKAN, fused._GridTerms, fused._GridSum):
        monkeypatch.setattr(cls, "apply", forbidden(cls.__name__))
    saved = []
    data = (Path(__file__).parent / "golden" / "tiny.kc").read_bytes()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        decoded = decode_bytes(data)
    assert decoded.pixels.shape == (24, 32, 3)
    assert calls and set(calls) == {"decode"} and not saved


def test_cubic_kernels_refuse_mismatched_shapes() -> None:
    """The kernels index without bounds checks, so shapes that would overrun them raise."""
    from kancoin.nets.kan import kernels_decode, kernels_train

    # C-contiguous arrays only, as the layers pass them: a strided view would compile (and
    # check) another specialisation of each kernel, not the one that runs
    x = np.zeros((10, 3), np.float32)
    table = np.zeros((3, 14, 5, 4), np.float32)
    parts = np.zeros((1, 3, 14, 5, 4), np.float32)
    wide_gy = np.zeros((10, 5), np.float32)  # more columns than the table
    gy = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError):
        kernels_train.kan_backward_cubic(
            x, x + 1, wide_gy, table, -1.0, 5.0, x.copy(), parts, True, (np.float32(0),) * 4
        )
    with pytest.raises(ValueError):  # output block wider than the table
        kernels_train.kan_backward_cubic(
            x, x + 1, gy, table, -1.0, 5.0, x.copy(), parts, True, (np.float32(0),) * 8
        )
    with pytest.raises(ValueError):
        kernels_decode.kan_forward_cubic(x, table, -1.0, 5.0, wide_gy, 1)
    with pytest.raises(ValueError):
        kernels_train.kan_forward_cubic_train(x, table, -1.0, 5.0, wide_gy, 1, x.copy())
    with pytest.raises(ValueError):  # training needs den (N, I): no (0, 0) "decoding" den
        kernels_train.kan_forward_cubic_train(
            x, table, -1.0, 5.0, gy, 1, np.zeros((0, 0), np.float32)
        )
    # and the same kernels accept matching shapes (the checks refuse only what overruns)
    y = np.zeros((10, 4), np.float32)
    den = np.zeros((10, 3), np.float32)
    kernels_train.kan_forward_cubic_train(x, table, -1.0, 5.0, y, 1, den)
    assert np.allclose(den, 2.0)  # 1 + exp(-0)
    kernels_train.kan_backward_cubic(
        x, den, gy, table, -1.0, 5.0, x.copy(), parts, True, (np.float32(0),) * 4
    )


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
    with torch.no_grad():  # the decoding evaluation too
        assert torch.isnan(layer.infer(x)[::3]).all()
        assert torch.isfinite(layer.infer(clean)).all()
