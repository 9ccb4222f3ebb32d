"""The latents' autoregressive network (kancoin.format.arm) and its training twin
(kancoin.codec.latent_rate.ArmNet, ArmState)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kancoin.format import arm, entropy

from .test_latent import _smooth_grid


def _int_forward(params, x, bits):
    """The module docstring's arithmetic in int64 (shifts, no float), apart from the decoder's
    float64 carrying."""
    w1, b1, w2, b2, w3, b3 = (np.asarray(p, np.int64) for p in params)
    x = np.asarray(x, np.int64)
    h = np.clip(x @ w1.T + b1, 0, arm.ACT_MAX)
    h = np.clip(((h @ w2.T) >> arm.FRAC) + b2, 0, arm.ACT_MAX)
    o = ((h @ w3.T) >> arm.FRAC) + b3
    half = 1 << (bits - 1)
    mu = np.clip(o[:, 0], -half << arm.FRAC, (half - 1) << arm.FRAC) / (1 << arm.FRAC)
    shift = arm.FRAC - arm.LOG_STEP
    j = np.clip((o[:, 1] + (1 << (shift - 1))) >> shift, arm.J_LO, arm.J_HI)
    return mu, arm.SCALES[j - arm.J_LO]


def _random_params(hidden: int, seed: int, lim: int = 1 << 15) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-lim, lim, shape) for _, shape in arm.tensor_shapes(hidden)]


@pytest.mark.parametrize("hidden, lim", [(31, 1 << 15), (16, 300), (4, 40)])
def test_forward_is_the_integer_arithmetic(hidden: int, lim: int) -> None:
    """The decoder's float64 forward gives exactly the int64 shifts' μ and scale, also at the
    largest parameters and inputs a file can hold (where the activations are clipped)."""
    params = _random_params(hidden, seed=hidden, lim=lim)
    x = np.random.default_rng(1).integers(-(1 << 15), (1 << 15) + 1, (2000, arm.TAPS))
    for bits in (3, 9, 16):
        mu, scale = arm.forward(params, x, bits)
        ref_mu, ref_scale = _int_forward(params, x, bits)
        assert np.array_equal(mu, ref_mu) and np.array_equal(scale, ref_scale)


def test_scale_table_is_exp_of_its_index() -> None:
    j = np.arange(arm.J_LO, arm.J_HI + 1)
    np.testing.assert_allclose(arm.SCALES, np.exp(j / 16), rtol=1e-4)
    assert np.all(arm.SCALES * 2**20 == np.round(arm.SCALES * 2**20))  # dyadic: exact anywhere


def test_neighbours_are_the_causal_values() -> None:
    q = np.arange(1, 13).reshape(3, 4)
    x = arm.neighbours(q).reshape(3, 4, arm.TAPS)
    # at (2, 2): left 10, left-left 9, up-left 6, up 7, up-right 8, up-up 3, up-left-left 5
    assert x[2, 2].tolist() == [10, 9, 6, 7, 8, 3, 5]
    assert x[0, 0].tolist() == [0] * arm.TAPS  # nothing coded before the first value
    assert x[1, 3].tolist() == [7, 6, 3, 4, 0, 0, 2]  # up-right and up-up outside


def _trained_params(q: np.ndarray, hidden: int = 8) -> list[np.ndarray]:
    """A network fitted a little to q (as the encoder fits one), in the file's integers."""
    from kancoin.codec.latent_rate import ArmNet, arm_inputs, arm_laplace, laplace_bits

    torch.manual_seed(0)
    net = ArmNet(hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    t = torch.from_numpy(q.astype(np.float32))
    x, v = arm_inputs(t), t.reshape(-1)
    for _ in range(150):
        mu, scale = arm_laplace(net(x))
        loss = laplace_bits(v - mu, scale) / len(v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return arm.to_ints(net.arrays())


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (2, 3), (37, 53)])
def test_grid_round_trip(shape: tuple[int, int]) -> None:
    q = np.round(_smooth_grid(*shape, seed=3) * 3).astype(np.int64)
    params = _trained_params(q) if q.size > 100 else _random_params(6, seed=0, lim=200)
    bits = max(3, int(np.abs(q).max()).bit_length() + 2)
    enc = entropy.new_encoder()
    arm.encode_grids(enc, [q], [bits], params)
    arm.encode_grids(enc, [-q], [bits], params)  # two grids in one stream, one after another
    dec = entropy.new_decoder(entropy.finish(enc))
    assert np.array_equal(arm.decode_grids(dec, [shape], [bits], params)[0], q)
    assert np.array_equal(arm.decode_grids(dec, [shape], [bits], params)[0], -q)


def _pyramid(seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Grids of a 4-level pyramid (odd sizes, a 1 x 1 last) and their bits, one grid wider."""
    shapes = [(23, 37), (12, 19), (6, 10), (1, 1)]
    qs = [np.round(_smooth_grid(h, w, seed=seed + k) * 3).astype(np.int64)
          for k, (h, w) in enumerate(shapes)]  # fmt: skip
    bits = [max(3, int(np.abs(q).max()).bit_length() + 2) for q in qs]
    bits[2] += 1  # a run of other bits within each line
    return qs, bits


def test_pyramid_round_trip_interleaved() -> None:
    """Line by line across the grids (``arm_order`` 1): the grids come back, and each value is
    coded under the same Laplace as one grid after another gives it (the same model, another
    order: the sizes agree to the coder's rounding)."""
    qs, bits = _pyramid(seed=11)
    params = _trained_params(qs[0])
    enc = entropy.new_encoder()
    arm.encode_grids(enc, qs, bits, params)
    interleaved = entropy.finish(enc)
    got: list = []
    dec = entropy.new_decoder(interleaved)
    out = arm.decode_grids(dec, [q.shape for q in qs], bits, params, got)
    for q, r in zip(qs, out, strict=True):
        assert r.dtype == np.int64 and np.array_equal(q, r)
    enc = entropy.new_encoder()
    for q, b in zip(qs, bits, strict=True):
        arm.encode_grids(enc, [q], [b], params)
    sequential = entropy.finish(enc)
    assert interleaved != sequential  # another order of the symbols
    assert abs(len(interleaved) - len(sequential)) <= 4
    # the recorded Laplaces are the network's on each grid, in its coding order
    for q, b, (mu, scale) in zip(qs, bits, got, strict=True):
        order, _ = arm._coding_order(*q.shape)
        ref_mu, ref_scale = arm.forward(params, arm.neighbours(q), b)
        assert np.array_equal(mu, ref_mu[order]) and np.array_equal(scale, ref_scale[order])
    # and given back to the encoder they write the same stream
    enc = entropy.new_encoder()
    arm.encode_grids(enc, qs, bits, params, got)
    assert entropy.finish(enc) == interleaved


def test_large_pyramids_build_their_lines_as_they_go(monkeypatch) -> None:
    """Past ``CACHED_VALUES`` a decode keeps no lines (their arrays are 72 bytes a value):
    the same grids come back from lines built one at a time."""
    qs, bits = _pyramid(seed=8)
    params = _random_params(6, seed=2, lim=300)
    enc = entropy.new_encoder()
    arm.encode_grids(enc, qs, bits, params)
    stream = entropy.finish(enc)
    monkeypatch.setattr(arm, "CACHED_VALUES", 0)
    monkeypatch.setattr(arm, "_CACHE", type(arm._CACHE)())
    out = arm.decode_grids(entropy.new_decoder(stream), [q.shape for q in qs], bits, params)
    assert len(arm._CACHE) == 0
    for q, r in zip(qs, out, strict=True):
        assert np.array_equal(q, r)


def test_kept_line_tables_stay_within_their_budget(monkeypatch) -> None:
    """Decoding pyramids of several sizes keeps the most recent tables whose values fit
    ``CACHED_VALUES`` together, and a table kept serves the next decode of its sizes."""
    qs, bits = _pyramid(seed=9)
    params = _random_params(6, seed=3, lim=300)
    shapes = [q.shape for q in qs]
    pyramid = sum(q.size for q in qs)
    monkeypatch.setattr(arm, "CACHED_VALUES", pyramid + qs[0].size)
    monkeypatch.setattr(arm, "_CACHE", type(arm._CACHE)())
    streams = {}
    for key in ("all", "finest", "second"):
        group = {"all": range(4), "finest": range(1), "second": range(1, 2)}[key]
        enc = entropy.new_encoder()
        arm.encode_grids(enc, [qs[k] for k in group], [bits[k] for k in group], params)
        streams[key] = (group, entropy.finish(enc))

    def decode(key: str) -> None:
        group, stream = streams[key]
        out = arm.decode_grids(entropy.new_decoder(stream), [shapes[k] for k in group],
                               [bits[k] for k in group], params)  # fmt: skip
        for k, r in zip(group, out, strict=True):
            assert np.array_equal(qs[k], r)

    decode("all")
    decode("finest")  # both fit
    assert list(arm._CACHE) == [tuple(shapes), (shapes[0],)]
    decode("second")  # over the budget: the least recent (the pyramid) goes
    assert list(arm._CACHE) == [(shapes[0],), (shapes[1],)]
    kept = arm._CACHE[(shapes[0],)]
    decode("finest")
    assert arm._CACHE[(shapes[0],)] is kept and list(arm._CACHE)[-1] == (shapes[0],)


def test_pyramid_decode_is_the_grid_by_grid_decode_of_its_order() -> None:
    """The interleaved decoder reads a stream written value by value in the order it
    documents (line d of every grid, finest first), built here from the network's
    per-grid Laplaces, one coder call per value."""
    qs, bits = _pyramid(seed=4)
    params = _random_params(6, seed=1, lim=300)
    per_grid = []
    for q, b in zip(qs, bits, strict=True):
        order, lines = arm._coding_order(*q.shape)
        mu, scale = arm.forward(params, arm.neighbours(q), b)
        flat = q.reshape(-1)[order]
        cut = np.cumsum([len(x) for x in lines])[:-1]
        per_grid.append(list(zip(np.split(flat, cut), np.split(mu[order], cut),
                                 np.split(scale[order], cut), strict=True)))  # fmt: skip
    enc = entropy.new_encoder()
    for d in range(max(len(g) for g in per_grid)):
        for k, g in enumerate(per_grid):
            if d < len(g):
                off = 1 << (bits[k] - 1)
                for v, m, s in zip(*g[d], strict=True):
                    enc.encode(np.array([v + off], np.int32), arm._model_family(bits[k]),
                               np.array([off + m]), np.array([s]))  # fmt: skip
    dec = entropy.new_decoder(entropy.finish(enc))
    out = arm.decode_grids(dec, [q.shape for q in qs], bits, params)
    for q, r in zip(qs, out, strict=True):
        assert np.array_equal(q, r)


def test_ideal_bits_agree_with_the_coded_size() -> None:
    q = np.round(_smooth_grid(96, 128, seed=5) / 4).astype(np.int64)
    params = _trained_params(q)
    bits = int(np.abs(q).max()).bit_length() + 2
    enc = entropy.new_encoder()
    arm.encode_grids(enc, [q], [bits], params)
    coded = 8 * len(entropy.finish(enc))
    ideal = arm.ideal_bits(q, bits, params)
    assert abs(ideal - coded) <= 0.01 * coded + 32
    # and the network learnt something: fewer bits than the grid's one zero-mean Laplace
    scale = max(float(np.abs(q).mean()), 0.05)
    flat = _int_laplace_bits(q, scale)
    assert ideal < 0.9 * flat


def _int_laplace_bits(q: np.ndarray, scale: float) -> float:
    from kancoin.format.context import _bin_mass

    v = q.reshape(-1).astype(np.float64)
    return float(-np.log2(_bin_mass(v - 0.5, v + 0.5, 0.0, scale)).sum())


def test_file_integers_follow_the_float_network() -> None:
    """The stored integers (units of 2^−8) give the float network's μ and scale to about the
    rounding of its parameters."""
    from kancoin.codec.latent_rate import ArmNet, arm_laplace

    torch.manual_seed(2)
    net = ArmNet(16)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
    x = np.random.default_rng(0).integers(-6, 7, (500, arm.TAPS))
    with torch.no_grad():
        mu, scale = arm_laplace(net(torch.from_numpy(x.astype(np.float32))))
    imu, iscale = arm.forward(arm.to_ints(net.arrays()), x, 9)
    np.testing.assert_allclose(imu, mu.numpy(), atol=0.1)
    np.testing.assert_allclose(np.log(iscale), np.log(scale.numpy()), atol=0.1)


def test_fused_rate_is_the_torch_rate() -> None:
    """The numba kernel's bits and gradient are ``laplace_bits``' (torch autograd)."""
    from kancoin.codec.latent_rate import _LaplaceRate, laplace_bits

    gen = torch.Generator().manual_seed(0)
    r = (torch.randn(4000, generator=gen) * 3).requires_grad_(True)
    scale = torch.rand(4000, generator=gen) * 4 + 0.06
    fused = _LaplaceRate.apply(r, scale)
    (g_fused,) = torch.autograd.grad(fused, r)
    ref = laplace_bits(r.double(), scale.double())
    (g_ref,) = torch.autograd.grad(ref, r)
    assert float(fused.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    np.testing.assert_allclose(g_fused.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-5)


def test_fused_rate_gradient_in_log_scale_is_autograds() -> None:
    """The kernel's gradient w.r.t. log scale is torch autograd's of ``laplace_bits``."""
    from kancoin.codec.latent_rate import laplace_bits
    from kancoin.nets.latent import kernels_train

    gen = torch.Generator().manual_seed(1)
    r = torch.randn(4000, generator=gen) * 3
    log_scale = (torch.rand(4000, generator=gen) * 4 - 2.5).requires_grad_(True)
    g_r = np.empty(4000, np.float32)
    g_ls = np.empty(4000, np.float32)
    scale = torch.exp(log_scale.detach())
    kernels_train.laplace_rate(r.numpy(), scale.numpy(), g_r, g_ls)
    (ref,) = torch.autograd.grad(laplace_bits(r.double(), torch.exp(log_scale.double())), log_scale)
    np.testing.assert_allclose(g_ls, ref.numpy(), rtol=1e-4, atol=1e-5)


def _fitted_through_neighbours(seed: int, shapes, spread: float, steps: int):
    """Random integer grids of ``shapes`` (× ``spread``) and an ``ArmState`` following the
    neighbours, fitted ``steps`` steps on them: (model, state)."""
    from types import SimpleNamespace

    from kancoin.codec.latent_rate import ArmState

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(seed)
    grids = [torch.round(torch.randn(s, generator=gen) * spread) for s in shapes]
    model = SimpleNamespace(latents=grids, spec=SimpleNamespace(arm=8))
    state = ArmState(model, through_neighbours=True)
    state.fit(model, steps)
    return model, state


@pytest.mark.parametrize("fused", [True, False])
def test_rate_reaches_latents_as_neighbours_as_through_the_network(fused: bool) -> None:
    """At the integers the network was refreshed on, the rate's gradient through its Jacobians
    (``ArmState(through_neighbours=True)``) is autograd's through the network itself; without
    them, only the value's own part (it differs)."""
    from kancoin.codec.latent_rate import ArmState, arm_inputs, arm_laplace, laplace_bits

    model, state = _fitted_through_neighbours(0, ((20, 30), (10, 15)), spread=3, steps=30)
    grids = model.latents
    plain = ArmState(model)
    plain.net.load_state_dict(state.net.state_dict())
    plain.fit(model, 0)
    for lv, q in enumerate(grids):
        y = q.clone().requires_grad_(True)
        mu, scale = arm_laplace(state.net(arm_inputs(y)))
        (ref,) = torch.autograd.grad(laplace_bits(y.reshape(-1) - mu, scale), y)
        y = q.clone().requires_grad_(True)
        (got,) = torch.autograd.grad(state.bits(lv, y, fused), y)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-4)
        y = q.clone().requires_grad_(True)
        (own,) = torch.autograd.grad(plain.bits(lv, y, fused), y)
        assert float((own - ref).abs().max()) > 0.05


def test_rate_through_neighbours_fused_is_autograds_away_from_the_refresh() -> None:
    """Between refreshes (noisy proxies, some far from the integers), the numba kernels' bits
    and gradient are the torch ops' (autograd of the first-order Laplaces)."""
    model, state = _fitted_through_neighbours(2, ((24, 33), (12, 17)), spread=4, steps=40)
    gen = torch.Generator().manual_seed(3)
    for lv, q in enumerate(model.latents):
        yq = q + torch.rand(q.shape, generator=gen) - 0.5
        yq[::3] += torch.randn(yq[::3].shape, generator=gen) * 3
        got, ref = [], []
        for fused, out in ((True, got), (False, ref)):
            y = yq.clone().requires_grad_(True)
            bits = state.bits(lv, y, fused)
            out += [float(bits.detach()), torch.autograd.grad(bits, y)[0]]
        assert got[0] == pytest.approx(ref[0], rel=1e-4)
        np.testing.assert_allclose(got[1].numpy(), ref[1].numpy(), rtol=1e-3, atol=1e-4)


def test_spec_needs_no_other_context_model() -> None:
    from kancoin.nets.latent import LatentSpec

    with pytest.raises(ValueError, match="arm"):
        LatentSpec((7, 16, 3), height=64, width=96, context=7, arm=8)
    with pytest.raises(ValueError, match="arm_order"):  # the order is the network's
        LatentSpec((7, 16, 3), height=64, width=96, context=7, arm_order=1)
    spec = LatentSpec((7, 16, 3), height=64, width=96, context=0, arm=8)
    names = [n for n, _ in spec.tensor_shapes()]
    assert names[:6] == [n for n, _ in arm.tensor_shapes(8)] and spec.first_grid == 6


ARM_WIDTH = 6  # a network small enough for a small image's budget


@pytest.fixture(scope="module")
def encoded_arm():
    """A small latent encode whose grids are coded by the network (a budget the default
    would give the predictor to)."""
    import kancoin.nets.latent as family
    from kancoin.codec.encode import encode_pixels
    from kancoin.codec.options import EncodeOptions

    from .conftest import crop

    saved = family.DEFAULT_ARM, family.ARM_SHARE
    family.DEFAULT_ARM, family.ARM_SHARE = ARM_WIDTH, 1.0
    try:
        pixels = crop(64, 96)
        opts = EncodeOptions(
            arch="latent", bpp=1.0, iters=200, batch_size=1024, device="cpu", threads=1
        )
        return pixels, opts, encode_pixels(pixels, opts)
    finally:
        family.DEFAULT_ARM, family.ARM_SHARE = saved


def test_encode_with_the_network_meets_its_budget(encoded_arm) -> None:
    from kancoin.metrics import psnr

    pixels, opts, res = encoded_arm
    assert res.spec.arm == ARM_WIDTH and res.spec.context == 0 and res.spec.predictor == 0
    assert res.spec.arm_order == 1  # what an encode writes: line by line across the pyramid
    budget = int(opts.bpp * 64 * 96 // 8)
    assert 0.97 * budget <= len(res.data) <= budget
    assert res.psnr == pytest.approx(psnr(res.decoded.pixels, pixels)) and res.psnr > 20


def test_network_estimate_agrees_with_the_coded_size(encoded_arm) -> None:
    _, _, res = encoded_arm
    coded = res.extra["latent_bits_coded"]
    assert abs(res.extra["latent_bits_estimated"] - coded) <= 0.01 * coded + 32


def test_network_file_decodes_alike_in_fresh_processes(encoded_arm, tmp_path) -> None:
    """Two fresh processes on 1 and 2 numba threads decode the encode's own pixels, bit for
    bit, without torch; the independent decode agrees."""
    import json
    import subprocess
    import sys

    from .test_latent import latent_reference_decode

    _, _, res = encoded_arm
    src = tmp_path / "a.kc"
    src.write_bytes(res.data)
    code = (
        "import sys, json;"
        "from kancoin.codec.decode import decode_bytes;"
        f"d = decode_bytes(open({str(src)!r}, 'rb').read());"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'pixels': d.pixels.tobytes().hex()}))"
    )
    for threads in ("1", "2"):
        env = {**__import__("os").environ, "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env=env)  # fmt: skip
        got = json.loads(out.stdout)
        assert got["torch"] is False
        assert bytes.fromhex(got["pixels"]) == res.decoded.pixels.tobytes()
    ref = latent_reference_decode(res.data)
    assert np.abs(ref.astype(int) - res.decoded.pixels.astype(int)).max() <= 1


def _smooth_model(arm_hidden: int = 8):
    """(spec, model) of a 64×96 image's latent family with the network, its grids smooth."""
    from kancoin.nets import build
    from kancoin.nets.latent import LatentSpec

    spec = LatentSpec((7, 16, 3), height=64, width=96, context=0, arm=arm_hidden)
    torch.manual_seed(0)
    model = build(spec)
    with torch.no_grad():
        for i, y in enumerate(model.latents):
            y.copy_(torch.from_numpy(_smooth_grid(*y.shape, seed=i).astype(np.float32)))
    return spec, model


def test_side_estimate_counts_the_network_as_the_file_codes_it() -> None:
    """What the rate control counts besides the grids (the network and the synthesis) is
    what they take in a written file: its size less the header and the grids' stream."""
    from kancoin.codec.latent import _grids_stream, rounded, serialise, side_bytes
    from kancoin.codec.latent_rate import ArmState
    from kancoin.format.container import overhead_bytes

    spec, model = _smooth_model()
    model.arm_state = ArmState(model)
    model.arm_state.fit(model, 50)
    data, header, qtensors = serialise((64, 96, 3), spec, model, rounded(model), 9)
    side = len(data) - overhead_bytes(spec, 1) - len(_grids_stream(header, qtensors))
    n_arm = sum(int(np.prod(s)) for _, s in arm.tensor_shapes(8))
    assert side > (spec.n_synthesis - n_arm) * 0.5  # the synthesis and the network are in it
    assert abs(side_bytes(spec, model, 9) - side) <= 0.02 * side + 8


def test_hostile_network_files_get_one_line_quickly() -> None:
    """A header asking for the widest network over garbage decodes (to noise) or is refused
    in one line, quickly; a network beside a context model is an inconsistent header."""
    import time

    from kancoin.codec.decode import decode_bytes
    from kancoin.errors import KancoinError
    from kancoin.nets.latent import LatentSpec

    from .test_limits import _crafted, _refused_fast

    spec = LatentSpec((7, 16, 3), height=64, width=96, context=0, arm=arm.MAX_HIDDEN)
    t0 = time.perf_counter()
    try:
        decode_bytes(_crafted(spec, 64, 96, 1, bytes(range(256)) * 8))
    except KancoinError as e:
        assert "\n" not in str(e)
    assert time.perf_counter() - t0 < 5.0
    bad = LatentSpec((7, 16, 3), height=64, width=96, context=0, arm=8)
    object.__setattr__(bad, "context", 4)  # what no encoder writes
    _refused_fast(_crafted(bad, 64, 96, 1, b"\x12" * 8), "inconsistent header")


def test_final_network_fit_never_ends_above_its_start() -> None:
    """The fit on every value (the file's network) keeps its best parameters: with a step so
    large that Adam diverges, it ends where it started, not higher; the bits compared are
    recomputed here from the network's Laplaces on the rounded grids."""
    from kancoin.codec.latent_rate import ArmState, arm_inputs, arm_laplace, laplace_bits

    _, model = _smooth_model()
    state = ArmState(model)
    state.fit(model, 30)

    def bits() -> float:
        qs = [torch.round(y.detach()) for y in model.latents]
        x = torch.cat([arm_inputs(q) for q in qs])
        v = torch.cat([q.reshape(-1) for q in qs])
        with torch.no_grad():
            mu, scale = arm_laplace(state.net(x))
            return float(laplace_bits(v - mu, scale))

    start = bits()
    for g in state.opt.param_groups:
        g["lr"] = 5.0  # far past any useful step: every Adam step makes it worse
    state.fit(model, 20, batch=None)
    assert bits() <= start * (1 + 1e-6)
    # and the Laplaces the training reads next are the kept network's
    qs = [torch.round(y.detach()) for y in model.latents]
    kept = sum(float(laplace_bits(q - m, s)) for q, m, s in zip(qs, state.mu, state.scale))
    assert abs(kept - bits()) <= 1e-3 * bits()


def _with_arm_order(data: bytes, value: int) -> bytes:
    """The file with its ``arm_order`` bit set to ``value`` (CRC recomputed): the field's
    offset counted from docs/format.md's table (after ``fixed_frac``)."""
    import zlib

    from kancoin.format.container import read_bytes as read

    spec = read(data)[0].spec
    fixed = 32 + 8 + 16 + 16 + 2 + 2 + 5 + 1 + 5
    at = fixed + 12 * (len(spec.widths) - 2) + (4 + 8 + 3 + 32 + 3 + 3 + 1 + 5 + 2 + 5)
    bits = int.from_bytes(data[:-4], "big")
    shift = 8 * (len(data) - 4) - at - 1
    bits = (bits & ~(1 << shift)) | (value << shift)
    body = bits.to_bytes(len(data) - 4, "big")
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_arm_order_without_a_network_is_refused() -> None:
    """The order bit is read where the table puts it (the golden network file's is 1), and
    set on a file whose grids have no network it is refused with one clear error."""
    from pathlib import Path

    from kancoin.codec.decode import decode_bytes
    from kancoin.errors import KancoinError

    golden = Path(__file__).parent / "golden"
    data = (golden / "tiny_latent_arm.kc").read_bytes()
    assert _with_arm_order(data, 1) == data and _with_arm_order(data, 0) != data
    predictor = (golden / "tiny_latent.kc").read_bytes()
    assert _with_arm_order(predictor, 0) == predictor
    with pytest.raises(KancoinError, match="arm_order"):
        decode_bytes(_with_arm_order(predictor, 1))
