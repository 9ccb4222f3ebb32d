"""The latent family: geometry, interpolation, the torch-free decoder, the encoder's rate
control and rate estimate, and the round trip through real files in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import encode_pixels
from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.format.container import read_bytes
from kancoin.format.layout import VERSION
from kancoin.format.quant import dequantize
from kancoin.metrics import psnr
from kancoin.nets import family
from kancoin.nets.latent import LatentSpec
from kancoin.nets.latent.grids import level_shapes, taps

from .conftest import crop


def latent_reference_decode(data: bytes) -> np.ndarray:
    """An independent decode of a latent file: torch's own bicubic interpolation and
    efficient-kan's Cox–de Boor B-splines (or torch's linear layers), in float64 (none of the
    decoder's taps, kernels or tables)."""
    from kancoin.nets.kan.layers import KANLinear
    from kancoin.nets.kan.network import KAN

    header, qtensors = read_bytes(data)
    spec = header.spec
    floats = [dequantize(q, qp).astype(np.float64) for q, qp in zip(qtensors, header.qparams)]
    h, w = spec.height, spec.width
    feats = []
    first = spec.first_grid
    for g in floats[first : first + spec.levels]:
        t = torch.from_numpy(g)[None, None]
        up = t if g.shape == (h, w) else F.interpolate(t, size=(h, w), mode="bicubic",
                                                       align_corners=False)  # fmt: skip
        feats.append(up.reshape(-1))
    x = torch.stack(feats, 1)
    it = iter(floats[first + spec.levels :])
    if spec.mlp:  # torch's own layers, float64
        layers = [torch.nn.Linear(i, o).double() for i, o in spec.layer_dims()]
        with torch.no_grad():
            for j, layer in enumerate(layers):
                layer.weight.copy_(torch.from_numpy(next(it)))
                layer.bias.copy_(torch.from_numpy(next(it)))
                x = layer(x)
                x = F.gelu(x, approximate="tanh") if j < len(layers) - 1 else x
        return torch.round(x.clamp(0, 1) * 255).to(torch.uint8).reshape(h, w, -1).numpy()
    net = KAN(spec.widths, spec.grid_size, spec.spline_order, spec.grid_range, node_bias=True)
    with torch.no_grad():
        for layer in net.layers:
            layer.base_weight.copy_(torch.from_numpy(next(it)))
            layer.spline_weight.copy_(torch.from_numpy(next(it)))
            layer.spline_scaler.fill_(1.0)
            layer.bias.copy_(torch.from_numpy(next(it)))
        net = net.double()
        for m in net.modules():
            if isinstance(m, KANLinear):
                m.backend = "reference"
        out = net(x)
    return torch.round(out.clamp(0, 1) * 255).to(torch.uint8).reshape(h, w, -1).numpy()


def assert_near_reference(pixels: np.ndarray, data: bytes, share: float = 0.001) -> None:
    """``pixels`` within one level of the independent decode of ``data`` (float64), on at most
    ``share`` of the values (+3); for the fixed-point MLP, whose GELU table (a value every
    2^−12) moves hidden values by up to 1.4e−4, on at most 1 % (or ten times ``share``)."""
    header, _ = read_bytes(data)
    if getattr(header.spec, "fixed_frac", 0):
        share = max(0.01, 10 * share)
    diff = np.abs(latent_reference_decode(data).astype(int) - pixels.astype(int))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= share * diff.size + 3


def test_level_shapes_round_up() -> None:
    assert level_shapes(512, 768, 3) == [(512, 768), (256, 384), (128, 192)]
    assert level_shapes(5, 7, 3) == [(5, 7), (3, 4), (2, 2)]


@pytest.mark.parametrize("n_in, n_out", [(4, 16), (3, 10), (12, 24), (1, 5)])
def test_taps_are_torch_bicubic(n_in: int, n_out: int) -> None:
    """The decoder's interpolation is PyTorch's bicubic (align_corners=False), computed apart."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(n_in, n_in + 2))
    iy, wy = taps(n_out, n_in)
    ix, wx = taps(n_out + 3, n_in + 2)
    rows = (g[iy] * wy[:, :, None]).sum(1)
    ours = (rows[:, ix] * wx).sum(2)
    t = torch.from_numpy(g)[None, None]
    ref = F.interpolate(t, size=(n_out, n_out + 3), mode="bicubic", align_corners=False)[0, 0]
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6)


@pytest.mark.parametrize("first_level", [0, 1])
def test_fused_features_equal_bicubic_interpolation_and_the_torch_path(first_level: int) -> None:
    """The training gather (numba, all levels in one pass) gives each pixel's features as
    PyTorch's bicubic upsampling of the grids (computed apart), and the same values and grid
    gradients as the per-level torch gather."""
    from kancoin.nets import build

    spec = LatentSpec((4, 6, 3), height=21, width=34, first_level=first_level)
    torch.manual_seed(0)
    model = build(spec)
    grids = [torch.randn(s, requires_grad=True) for s in spec.grid_shapes]
    idx = torch.randint(0, 21 * 34, (500,))
    fused = model.features_at(grids, idx, fused=True)
    ref = torch.stack([
        g[None, None] if g.shape == (21, 34) else
        F.interpolate(g[None, None], size=(21, 34), mode="bicubic", align_corners=False)
        for g in grids
    ])[:, 0, 0].reshape(len(grids), -1)[:, idx].T  # fmt: skip
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=0)
    upstream = torch.randn(fused.shape)
    g_fused = torch.autograd.grad((fused * upstream).sum(), grids)
    plain = model.features_at(grids, idx, fused=False)
    g_plain = torch.autograd.grad((plain * upstream).sum(), grids)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=0)
    for a, b in zip(g_fused, g_plain):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("context, predictor", [(0, False), (4, False), (7, True)])
def test_fused_rate_equals_the_torch_rate_and_its_gradient(context: int, predictor: bool) -> None:
    """The training rate kernel (numba) gives the bits and gradient of the torch ops it
    replaces, for every context model, noisy proxies and rounded ones alike."""
    from kancoin.codec.latent_rate import grid_bits
    from kancoin.format import context as coding

    g = torch.from_numpy(_smooth_grid(23, 31).astype(np.float32) * 0.7)
    wt = torch.from_numpy(coding.fit_predictor(np.round(g.numpy()).astype(np.float64))
                          .astype(np.float32) / 64 + 1e-3) if predictor else None  # fmt: skip
    # (weights off the 1/64 lattice: a rounded grid's residual then never sits on a bin's edge,
    # where torch's abs and sign give a derivative of 0 and the kernel the Laplace's 1 / 2b)
    for proxy in (g + torch.rand(g.shape) - 0.5, torch.round(g)):
        a = proxy.clone().requires_grad_()
        b = proxy.clone().requires_grad_()
        fused = grid_bits(a, g, context, wt, fused=True)
        plain = grid_bits(b, g, context, wt, fused=False)
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=0)
        fused.backward()
        plain.backward()
        assert a.grad.abs().sum() > 0
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def encoded():
    """One small latent encode at a rate target (the module's shared file), on one thread as
    the other tests' small encodes (on a loaded 2-core machine, 2 threads took 10x longer)."""
    pixels = crop(64, 96)
    opts = EncodeOptions(
        arch="latent", bpp=1.0, iters=200, batch_size=1024, device="cpu", threads=1
    )
    return pixels, opts, encode_pixels(pixels, opts)


def test_rate_control_hits_the_target(encoded) -> None:
    pixels, opts, res = encoded
    budget = int(opts.bpp * 64 * 96 // 8)
    assert len(res.data) <= budget
    assert len(res.data) >= 0.97 * budget
    assert res.bpp == len(res.data) * 8 / (64 * 96)


def test_estimate_agrees_with_the_coded_size(encoded) -> None:
    """The grids' ideal bits under the file's context model (the rate the loss and the rate
    control use) and the range coder's output for them agree: to 1 %, plus the coder's last
    word."""
    _, _, res = encoded
    coded = res.extra["latent_bits_coded"]
    assert abs(res.extra["latent_bits_estimated"] - coded) <= 0.01 * coded + 32
    assert coded < 8 * res.extra["payload_bytes"]  # the grids are part of the payload


def test_side_estimate_agrees_with_the_file() -> None:
    """What the rate control counts for the tensors besides the grids (context model and
    synthesis) is what they take in a written file: its size less header and grids' stream."""
    from kancoin.codec.latent import _grids_stream, rounded, serialise, side_bytes
    from kancoin.format.container import overhead_bytes
    from kancoin.nets import build

    spec = LatentSpec((7, 16, 3), height=64, width=96, context=7, predictor=1)
    torch.manual_seed(0)
    model = build(spec)
    with torch.no_grad():
        for i, y in enumerate(model.latents):
            y.copy_(torch.from_numpy(_smooth_grid(*y.shape, seed=i).astype(np.float32)))
        for p in model.synthesis.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    data, header, qtensors = serialise((64, 96, 3), spec, model, rounded(model), 9)
    side = len(data) - overhead_bytes(spec, 1) - len(_grids_stream(header, qtensors))
    assert side > 1000  # the synthesis's 1,459 weights at 9 bits are most of it
    assert abs(side_bytes(spec, model, 9) - side) <= 0.02 * side + 8


def test_reported_psnr_is_the_independent_decode(encoded) -> None:
    pixels, _, res = encoded
    assert_near_reference(res.decoded.pixels, res.data)
    ref = latent_reference_decode(res.data)
    assert res.psnr == pytest.approx(psnr(ref, pixels), abs=0.02)
    assert res.psnr > 20  # it learnt the image


def test_fresh_process_decodes_the_same_bits_without_torch(encoded, tmp_path) -> None:
    """A fresh process on every numba thread decodes the pixels the encode's own decode (on
    one thread) gave, and never loads torch."""
    _, _, res = encoded
    src = tmp_path / "a.kc"
    src.write_bytes(res.data)
    code = (
        "import sys, json;"
        "from kancoin.codec.decode import decode_bytes;"
        f"d = decode_bytes(open({str(src)!r}, 'rb').read());"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'sum': int(d.pixels.sum()),"
        "'pixels': d.pixels.tobytes().hex()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["torch"] is False
    assert bytes.fromhex(got["pixels"]) == res.decoded.pixels.tobytes()


def test_fixed_lambda_mode() -> None:
    """--lmbda: no rate target; a larger λ gives a smaller file."""
    pixels = crop(48, 48)
    sizes = []
    for lmbda in (1e-4, 1e-2):
        opts = EncodeOptions(
            arch="latent",
            bpp=4.0,
            iters=60,
            batch_size=512,
            device="cpu",
            lmbda=lmbda,
            threads=1,
        )
        res = encode_pixels(pixels, opts)
        assert res.extra["lmbda"] == lmbda
        sizes.append(len(res.data))
    assert sizes[1] < sizes[0]


def test_lmbda_is_refused_for_weight_only_families() -> None:
    with pytest.raises(KancoinError, match="--lmbda"):
        EncodeOptions(arch="kan", lmbda=0.01)


def test_spec_round_trips_through_the_header(encoded) -> None:
    _, _, res = encoded
    header, _ = read_bytes(res.data)
    assert header.version == VERSION and isinstance(header.spec, LatentSpec)
    assert header.spec == res.spec
    assert family("latent").input_width({"levels": 5}) == 5


def test_a_latent_file_claiming_an_old_version_is_refused(encoded) -> None:
    import zlib

    _, _, res = encoded
    data = bytearray(res.data)
    data[4] = 5  # the version byte
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "big")
    with pytest.raises(KancoinError, match="version 6"):
        decode_bytes(bytes(data))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_encode_decodes_on_cpu_to_reported_psnr() -> None:
    """The same trainer on CUDA (torch ops: the dense B-spline backend); the file decodes on the
    CPU to the reported PSNR (checked against the independent decode)."""
    pixels = crop(64, 96)
    opts = EncodeOptions(arch="latent", bpp=1.0, iters=300, batch_size=2048, device="cuda")
    res = encode_pixels(pixels, opts)
    assert res.device.startswith("cuda")
    assert psnr(latent_reference_decode(res.data), pixels) == pytest.approx(res.psnr, abs=0.05)
    assert len(res.data) <= int(opts.bpp * 64 * 96 // 8) and res.psnr > 20


def test_header_size_counted_by_hand() -> None:
    """A latent file's header, counted from docs/format.md: fixed fields, one hidden width,
    the family's 11 fields, then per tensor its range and (coding 1) its entropy model."""
    from kancoin.format.container import header_bits

    spec = LatentSpec((5, 8, 3), height=40, width=48, context=4, first_level=1)
    fixed = 32 + 8 + 16 + 16 + 2 + 2 + 5 + 1 + 5
    family_bits = 4 + 8 + 3 + 32 + 3 + 3 + 1 + 5 + 2 + 5 + 1
    # the context scales, the grids, then base weight, coefficients and bias per layer
    n_tensors = 1 + 5 + 2 * 3
    assert len(spec.tensor_shapes()) == n_tensors
    expected = fixed + 12 + family_bits + n_tensors * ((5 + 32 + 32) + (4 + 16 + 16))
    assert header_bits(spec, 1) == expected


def test_context_coder_round_trips_and_matches_its_estimate() -> None:
    """A grid coded along anti-diagonals with causal contexts decodes to itself; its size is
    the ideal bits of the context model within a word; a grid with structure codes smaller
    under contexts than under one Laplace."""
    import constriction

    from kancoin.format import context as coding
    from kancoin.format import entropy

    rng = np.random.default_rng(1)
    q = np.round(rng.laplace(0, 0.6, size=(40, 50))).astype(np.int64)
    q[5:30, 8:45] = 0  # a flat region: zeros next to zeros
    bits = 4
    scales = coding.fit_scales(q, 4)
    enc = constriction.stream.queue.RangeEncoder()
    coding.encode_grid(enc, q, bits, scales)
    words = enc.get_compressed()
    back = coding.decode_grid(constriction.stream.queue.RangeDecoder(words), q.shape, bits, scales)
    assert np.array_equal(back, q)
    assert abs(32 * len(words) - coding.ideal_bits(q, scales, bits)) <= 0.01 * 32 * len(words) + 32
    flat = entropy.laplace_model(q, 1 << (bits - 1))
    one = 8 * len(entropy.encode([(q + (1 << (bits - 1))).astype(np.uint32)], [bits], [flat]))
    assert 32 * len(words) < one


def test_contexts_are_causal_neighbours() -> None:
    from kancoin.format.context import contexts, lines

    q = np.array([[0, 2, 0], [-1, 0, 0]])
    # (0,0): nothing before; (0,1): left 0; (0,2): left 2; (1,0): up 0; (1,1): left 1 + up 2
    assert contexts(q, 4).tolist() == [[0, 0, 2], [0, 3, 0]]
    order = [(int(r), int(c)) for rs, cs in lines(2, 3) for r, c in zip(rs, cs)]
    assert order == [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2)]


def _smooth_grid(h: int, w: int, seed: int = 2) -> np.ndarray:
    """Integers of a smooth random field (neighbours alike): what trained coarse grids are."""
    rng = np.random.default_rng(seed)
    field = np.cumsum(np.cumsum(rng.normal(0, 0.4, size=(h, w)), 0), 1)
    return np.round(field - field.mean()).astype(np.int64)


def test_predictor_coder_round_trips_and_matches_its_estimate() -> None:
    """A grid coded along the lines 2r + c with Laplaces centred on the prediction decodes to
    itself; its size is the ideal bits within a word; on a smooth grid it codes smaller than
    the zero-mean contexts."""
    import constriction

    from kancoin.format import context as coding

    q = _smooth_grid(30, 44)
    bits = max(4, int(np.abs(q).max()).bit_length() + 2)
    wt = coding.fit_predictor(q)
    scales = coding.fit_scales(q, 7, wt)
    enc = constriction.stream.queue.RangeEncoder()
    coding.encode_grid(enc, q, bits, scales, wt)
    words = enc.get_compressed()
    dec = constriction.stream.queue.RangeDecoder(words)
    assert np.array_equal(coding.decode_grid(dec, q.shape, bits, scales, wt), q)
    ideal = coding.ideal_bits(q, scales, bits, wt)
    assert abs(32 * len(words) - ideal) <= 0.01 * 32 * len(words) + 32
    plain = coding.ideal_bits(q, coding.fit_scales(q, 4), bits)
    assert ideal < 0.8 * plain


def test_predictor_neighbours_come_before_their_symbol() -> None:
    """Every neighbour a prediction reads is on an earlier line 2r + c; the predictions are
    the weighted neighbours, counted by hand; the trainer's neighbours are the coder's."""
    from kancoin.codec.latent_rate import neighbours as torch_neighbours
    from kancoin.format.context import NEIGHBOURS, lines, neighbours, predictions

    h, w = 5, 7
    line = np.empty((h, w), int)
    for d, (rs, cs) in enumerate(lines(h, w, 2)):
        line[rs, cs] = d
    assert sorted(np.unique(line)) == list(range(2 * (h - 1) + w))  # each position once
    for r in range(h):
        for c in range(w):
            for dr, dc in NEIGHBOURS:
                if 0 <= r - dr and 0 <= c - dc < w:
                    assert line[r - dr, c - dc] < line[r, c]
    q = np.arange(h * w).reshape(h, w) - 10
    wt = np.array([64, 32, -16, 8])  # 1, ½, −¼, ⅛
    r, c = 3, 4
    by_hand = q[r, c - 1] + q[r - 1, c] / 2 - q[r - 1, c - 1] / 4 + q[r - 1, c + 1] / 8
    assert predictions(q, wt)[r, c] == by_hand
    assert predictions(q, wt)[0, 0] == 0  # nothing before the first symbol
    assert np.array_equal(torch_neighbours(torch.from_numpy(q)).numpy(), neighbours(q))


def test_predictor_weights_are_stored_exactly() -> None:
    """A file's predictor weights read back as the integers it was coded with; a file whose
    weights tensor claims other bits is refused with a clear error."""
    from kancoin.codec.latent import serialise
    from kancoin.format import context as coding
    from kancoin.nets import build

    spec = LatentSpec((3, 4, 3), height=32, width=40, context=7, predictor=1)
    ints = [_smooth_grid(*s, seed=i) for i, s in enumerate(spec.grid_shapes)]
    data, header, qtensors = serialise((32, 40, 3), spec, build(spec), ints, 9)
    header2, q2 = read_bytes(data)
    _, weights = coding.models_of(header2, q2)
    assert np.array_equal(weights, np.stack([coding.fit_predictor(q) for q in ints]))
    floats = dequantize(q2[1], header2.qparams[1])
    assert np.array_equal(floats * 64, weights)  # the stored range is the weights' own
    from dataclasses import replace

    bad = replace(header2, qparams=(header2.qparams[0], replace(header2.qparams[1], bits=9),
                                    *header2.qparams[2:]))  # fmt: skip
    with pytest.raises(KancoinError, match="8 bits"):
        coding.models_of(bad, q2)


@pytest.mark.parametrize(
    "first_level, context, predictor, synthesis, fixed_frac",
    [(0, 4, 0, 0, 0), (1, 0, 0, 0, 0), (2, 3, 0, 0, 0), (1, 7, 1, 0, 0), (1, 7, 1, 1, 0),
     (0, 0, 0, 1, 0), (1, 7, 1, 1, 16), (0, 0, 0, 1, 14), (1, 0, 0, 1, 20)],
)  # fmt: skip
def test_untrained_files_decode_as_the_reference(
    first_level: int, context: int, predictor: int, synthesis: int, fixed_frac: int
) -> None:
    """Files of every pyramid start, context setting and synthesis (random grids, an
    untrained synthesis; the MLP in float32 and in fixed point), written by the encoder's
    serialiser: the decoder agrees with the independent decode, and the file reads back to
    the spec."""
    from kancoin.codec.latent import serialise
    from kancoin.nets import build

    widths = (4, 8, 6, 3) if synthesis else (4, 6, 3)
    spec = LatentSpec(widths, height=24, width=40, context=context, first_level=first_level,
                      predictor=predictor, synthesis=synthesis, fixed_frac=fixed_frac)  # fmt: skip
    torch.manual_seed(0)
    model = build(spec)
    rng = np.random.default_rng(first_level)
    ints = [np.round(rng.laplace(0, 0.8, size=s)).astype(np.int64) for s in spec.grid_shapes]
    data, header, _ = serialise((24, 40, 3), spec, model, ints, 9)
    assert read_bytes(data)[0].spec == spec
    assert_near_reference(decode_bytes(data).pixels, data, share=0.0)


def test_each_family_runs_its_own_preset_in_eval() -> None:
    """`kancoin eval --arch kan --arch latent`: a preset is each family's own (fast: 3,000
    KAN steps, 1,000 latent ones; default: 10,000 and 12,000); iters given by the user stay."""
    from kancoin.eval.settings import make_settings

    fast = EncodeOptions(effort="fast")
    kan, latent = make_settings([0.3], ["kan", "latent"], [], fast, "cpu")
    assert (kan.options.iters, latent.options.iters) == (3_000, 1_000)
    kan, latent = make_settings([0.3], ["kan", "latent"], [], EncodeOptions(), "cpu")
    assert (kan.options.iters, latent.options.iters) == (10_000, 12_000)
    kan, latent = make_settings([0.3], ["kan", "latent"], [], EncodeOptions(iters=500), "cpu")
    assert kan.options.iters == latent.options.iters == 500
    # steps given that equal another family's preset stay too, in either order, and through
    # every replace on the way (the device's)
    for archs, iters in ((["latent", "kan"], 12_000), (["kan", "latent"], 10_000)):
        base = EncodeOptions(arch=archs[0], iters=iters).replace(device="cpu")
        settings = make_settings([0.3], archs, [], base, "cpu")
        assert [s.options.iters for s in settings] == [iters, iters]
    preset = EncodeOptions(arch="latent").replace(device="cpu").replace(arch="kan")
    assert preset.iters == 10_000


@pytest.mark.parametrize(
    "option", [{"coding": "fixed"}, {"bit_alloc": "tensor"}, {"optimizer": "lbfgs"},
               {"compile": "default"}, {"qat_lr": 0.1}, {"grid_extend": 1}, {"basis": "rbf"}],
)  # fmt: skip
def test_options_the_latent_encoder_does_not_use_are_refused(option: dict) -> None:
    """Not silently ignored: one line naming the option."""
    flag = "--" + next(iter(option)).replace("_", "-")
    with pytest.raises(KancoinError, match=f"{flag}.*not an option of --arch latent"):
        EncodeOptions(arch="latent", **option)


@pytest.mark.parametrize("option", [{"grid_size": 6}, {"spline_order": 2}])
def test_spline_options_are_refused_with_the_mlp_synthesis(option: dict) -> None:
    """An MLP has no B-splines: a spline override is refused in one line, not stored unused."""
    from kancoin.codec.encode import plan

    with pytest.raises(KancoinError, match="--synthesis mlp has neither"):
        plan((256, 384, 3), EncodeOptions(arch="latent", synthesis="mlp", **option))
    assert not plan((256, 384, 3), EncodeOptions(arch="latent", **option)).mlp


def test_the_default_synthesis_is_the_mlp_and_rows_know_which_they_used() -> None:
    """The default encode trains the MLP synthesis; a B-spline option alone chooses the KAN.
    The eval's row key names the synthesis resolved, so a row made under another default is
    not taken for this one's, and the description says which network it is."""
    from kancoin.codec.encode import plan
    from kancoin.eval.settings import make_settings

    assert plan((256, 384, 3), EncodeOptions(arch="latent")).mlp
    assert EncodeOptions(arch="latent").resolved_synthesis == "mlp"
    assert EncodeOptions(arch="latent", grid_size=6).resolved_synthesis == "kan"
    assert EncodeOptions(arch="kan").resolved_synthesis is None
    default, kan = (
        make_settings([0.3], ["latent"], [], EncodeOptions(**kw), "cpu")[0]
        for kw in ({}, {"synthesis": "kan"})
    )  # fmt: skip
    assert default.key()["options"]["synthesis"] == "mlp"
    assert kan.key()["options"]["synthesis"] == "kan"
    assert "(MLP synthesis)" in default.description()
    assert "(KAN synthesis)" in kan.description()


def test_float_psnr_is_the_unquantized_synthesis_on_the_whole_image(encoded) -> None:
    """float_psnr: the file's grids through the float synthesis on every pixel, measured apart
    from the decoder; the file (synthesis at 9+ bits) loses little to it."""
    _, _, res = encoded
    assert abs(res.float_psnr - res.psnr) < 1.0


def test_an_underfull_file_takes_synthesis_bits_before_a_negative_dead_zone(encoded) -> None:
    """Under the floor after training, finer synthesis weights (they only help) go first; the
    dead zone rounds values away from zero (distortion) only when they are not enough."""
    from kancoin.format.quant import MAX_BITS

    _, _, res = encoded
    assert res.extra["deadzone"] < 0  # the fixture's 200 steps leave it under the floor
    assert res.extra["synthesis_bits"] == MAX_BITS


def test_an_overfull_file_is_trimmed_by_the_dead_zone_to_the_budget() -> None:
    """λ held near 0 (no rate control in training): the grids come out over the budget and the
    dead zone trims them until the whole file fits (and fills it to the floor)."""
    from kancoin.codec.latent import encode_latent
    from kancoin.codec.latent_recipe import LatentRecipe

    opts = EncodeOptions(arch="latent", bpp=0.3, iters=150, batch_size=512, device="cpu",
                         threads=1)  # fmt: skip
    recipe = LatentRecipe(batch=512, hard=0.1, lr=opts.resolved_lr, lmbda0=1e-7,
                          control_until=0.0)  # fmt: skip
    res = encode_latent(crop(128, 128), opts, recipe=recipe)
    budget = int(0.3 * 128 * 128 // 8)
    assert res.extra["deadzone"] > 0
    assert 0.97 * budget <= len(res.data) <= budget
    assert psnr(decode_bytes(res.data).pixels, crop(128, 128)) == pytest.approx(res.psnr)


def test_a_file_far_over_is_brought_down_by_training_before_the_dead_zone() -> None:
    """Over the budget by more than ``OVER`` after training, the encoder first trains a short
    hard phase at a λ raised by the miss: the dead zone left to trim is narrower than the
    one the same training needs without that phase, and the file still fits."""
    from dataclasses import replace

    from kancoin.codec.latent import encode_latent
    from kancoin.codec.latent_recipe import LatentRecipe

    opts = EncodeOptions(arch="latent", bpp=0.3, iters=150, batch_size=512, device="cpu",
                         threads=1)  # fmt: skip
    # λ held a little too low (no rate control in training): the grids end a few % over
    lmbda0 = 5e-5
    recipe = LatentRecipe(batch=512, hard=0.1, lr=opts.resolved_lr, lmbda0=lmbda0,
                          control_until=0.0)  # fmt: skip
    budget = int(0.3 * 128 * 128 // 8)
    trimmed = encode_latent(crop(128, 128), opts, recipe=replace(recipe, refine=0.0))
    trained = encode_latent(crop(128, 128), opts, recipe=recipe)
    assert trimmed.steps == 150 and trained.steps > 150  # the phase ran
    assert trained.extra["lmbda"] > lmbda0  # at a λ moved up by the miss
    assert trained.extra["deadzone"] < trimmed.extra["deadzone"]
    assert len(trained.data) <= budget


@pytest.mark.parametrize(
    ("bpp", "step"),
    [(0.1, 2 / 3), (0.15, 2 / 3), (0.3, 2 / 3), (0.45, 2 / 3), (0.46, 0.3 / 0.46), (0.6, 0.5),
     (1.2, 0.25)],
)
def test_latent_step_follows_the_target(bpp: float, step: float) -> None:
    from kancoin.codec.latent_recipe import default_recipe

    assert default_recipe(EncodeOptions(arch="latent", bpp=bpp)).step == pytest.approx(step)


def test_a_rich_target_stores_a_finer_latent_step() -> None:
    """The written file's grids carry the finer step (read back from its header)."""
    pixels = crop(96, 96)
    opts = EncodeOptions(arch="latent", bpp=0.6, iters=30, batch_size=512, device="cpu",
                         threads=1)  # fmt: skip
    res = encode_pixels(pixels, opts)
    header, _ = read_bytes(res.data)
    first, levels = header.spec.first_grid, header.spec.levels
    assert {qp.step for qp in header.qparams[first : first + levels]} == {0.5}
    assert len(res.data) <= int(0.6 * 96 * 96 / 8)


def test_a_fixed_lambda_keeps_the_unit_step() -> None:
    from kancoin.codec.latent_recipe import default_recipe

    recipe = default_recipe(EncodeOptions(arch="latent", bpp=0.6, lmbda=1e-3))
    assert (recipe.step, recipe.target_frac) == (1.0, 1.0)


@pytest.mark.parametrize("bpp", [0.15, 0.3, 0.6, 1.2])
def test_training_aims_just_under_the_budget_at_every_rate(bpp: float) -> None:
    from kancoin.codec.latent_recipe import default_recipe

    assert default_recipe(EncodeOptions(arch="latent", bpp=bpp)).target_frac == 0.99


def test_the_rate_control_stops_lambda_at_its_floor() -> None:
    """A budget the grids cannot fill: the control lowers λ step after step, to its floor and
    no further; without the floor the same training takes it orders of magnitude lower."""
    from dataclasses import replace

    from kancoin.codec.encode import plan
    from kancoin.codec.latent import train
    from kancoin.codec.latent_recipe import default_recipe

    pixels = crop(48, 48)
    opts = EncodeOptions(arch="latent", bpp=8.0, iters=200, batch_size=256, device="cpu")
    spec = plan(pixels.shape, opts)
    recipe = replace(default_recipe(opts), lmbda_min=1e-4)
    dev = torch.device("cpu")
    target = 8.0 * 48 * 48 / 8
    floored = train(pixels, spec, recipe, 200, dev, None, target, 0.0)
    free = train(pixels, spec, replace(recipe, lmbda_min=0.0), 200, dev, None, target, 0.0)
    assert floored.lmbda == pytest.approx(1e-4)
    assert free.lmbda < 1e-6


@pytest.mark.parametrize(("iters", "hard"), [(100, 10), (1000, 100), (3000, 300), (10000, 300)])
def test_the_hard_phase_is_a_tenth_of_the_steps_up_to_300(iters: int, hard: int) -> None:
    from kancoin.codec.latent_recipe import default_recipe

    opts = EncodeOptions(arch="latent", iters=iters)
    assert round(iters * default_recipe(opts).hard) == hard
    # an explicit --qat is the fraction asked for; the KAN keeps its tenth
    assert default_recipe(EncodeOptions(arch="latent", iters=iters, qat=0.2)).hard == 0.2
    assert EncodeOptions(arch="kan", iters=iters).qat_iters == round(iters / 10)


def test_a_hard_phase_without_latents_trains_the_synthesis_alone() -> None:
    from dataclasses import replace

    from kancoin.codec.encode import plan
    from kancoin.codec.latent import train
    from kancoin.codec.latent_recipe import default_recipe
    from kancoin.nets import build

    pixels = crop(48, 48)
    opts = EncodeOptions(arch="latent", bpp=2.0, iters=6, batch_size=256, device="cpu")
    spec = plan(pixels.shape, opts)
    recipe = replace(default_recipe(opts), hard=1.0, hard_latents=False, init_gain=0.0)
    torch.manual_seed(0)
    fresh = build(spec)
    trained = train(pixels, spec, recipe, 6, torch.device("cpu"), 1e-3, None, 0.0).model
    for y, y0 in zip(trained.latents, fresh.latents, strict=True):
        assert torch.equal(y.detach(), y0.detach())
    moved = [not torch.equal(a, b) for a, b in zip(trained.synthesis.parameters(),
                                                   fresh.synthesis.parameters())]  # fmt: skip
    assert any(moved)


def test_the_default_encode_is_the_latent_family(tmp_path) -> None:
    """`kancoin encode` without --arch writes a latent file (it beats the weights-only KAN on
    every Kodak image, docs/research/latent.md); `--arch kan` still writes the KAN's."""
    from PIL import Image

    from kancoin.nets import family_of

    from .test_cli import run

    img = tmp_path / "c.png"
    Image.fromarray(crop(64, 96)).save(img)
    fast = ("--bpp", "1", "--iters", "30", "--batch-size", "1024", "--threads", "1", "-q")
    assert run("encode", img, tmp_path / "a.kc", *fast).returncode == 0
    assert family_of(read_bytes((tmp_path / "a.kc").read_bytes())[0].spec).name == "latent"
    assert run("encode", img, tmp_path / "k.kc", "--arch", "kan", *fast).returncode == 0
    assert family_of(read_bytes((tmp_path / "k.kc").read_bytes())[0].spec).name == "kan"


def _train_small(iters: int = 4, **changes):
    from dataclasses import replace

    from kancoin.codec.encode import plan
    from kancoin.codec.latent import train
    from kancoin.codec.latent_recipe import default_recipe

    pixels = crop(48, 48)
    opts = EncodeOptions(arch="latent", bpp=2.0, iters=4, batch_size=256, device="cpu")
    spec = plan(pixels.shape, opts)
    recipe = replace(default_recipe(opts), **changes)
    return train(pixels, spec, recipe, iters, torch.device("cpu"), 1e-3, None, 0.0).model


def test_laplacian_pyramid_rebuilds_the_block_means() -> None:
    from kancoin.codec.latent import laplacian_pyramid

    img = torch.rand(64, 96, 3, generator=torch.Generator().manual_seed(0))
    levels = laplacian_pyramid(img, [(32, 48), (16, 24), (8, 12)])
    rebuilt = levels[-1] + 0.5
    for lap in levels[-2::-1]:
        rebuilt = lap + F.interpolate(rebuilt[None, None], size=lap.shape, mode="bicubic",
                                      align_corners=False)[0, 0]  # fmt: skip
    grey = img.numpy().mean(-1)
    blocks = grey.reshape(32, 2, 48, 2).mean(axis=(1, 3))  # the finest level: 2×2 means
    assert np.allclose(rebuilt.numpy(), blocks, atol=1e-5)
    assert float(levels[-1].mean()) == pytest.approx(float(grey.mean()) - 0.5, abs=1e-5)



def test_pyramid_start_puts_the_image_in_the_grids() -> None:
    from kancoin.codec.latent import laplacian_pyramid

    model = _train_small(iters=0, init_gain=8.0)
    img = torch.from_numpy(crop(48, 48).astype(np.float32) / 255.0)
    expected = laplacian_pyramid(img, model.spec.grid_shapes)
    for y, lap in zip(model.latents, expected, strict=True):
        assert torch.allclose(y.detach(), lap * (8.0 / model.steps[0]))
    zeros = _train_small(iters=0, init_gain=0.0).latents
    assert all(float(y.detach().abs().max()) == 0 for y in zeros)


def test_full_image_steps_do_not_depend_on_the_batch() -> None:
    a = _train_small(full_last=4)
    b = _train_small(full_last=4, batch=64)
    c = _train_small(full_last=0, batch=64)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(
        torch.equal(x, y) for x, y in zip(b.state_dict().values(), c.state_dict().values())
    )


def test_the_synthesis_may_learn_at_its_own_rate() -> None:
    start = _train_small(iters=0)
    frozen_synthesis = _train_small(lr_synthesis=0.0)
    frozen_latents = _train_small(lr=0.0, lr_synthesis=1e-2)
    for model, moves_latents in ((frozen_synthesis, True), (frozen_latents, False)):
        latents = [torch.equal(y, y0) for y, y0 in zip(model.latents, start.latents)]
        synthesis = [torch.equal(p, p0) for p, p0 in zip(model.synthesis.parameters(),
                                                         start.synthesis.parameters())]  # fmt: skip
        assert all(synthesis) == moves_latents
        assert all(latents) != moves_latents
