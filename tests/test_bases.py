"""Research options: every KAN basis, node bias, LayerNorm, grid extension and LBFGS
round-trip through a real file and decode to the PSNR the encoder reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kancoin.codec import qat
from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import encode_pixels
from kancoin.codec.options import EncodeOptions
from kancoin.codec.ratecontrol import budget_bytes
from kancoin.errors import KancoinError
from kancoin.format.container import FileHeader, read_bytes, write_bytes
from kancoin.format.quant import QuantParams
from kancoin.metrics import psnr
from kancoin.nets import build, export_arrays, family, load_arrays, render
from kancoin.nets.kan import BASES, KanSpec
from kancoin.nets.kan.layers import KANLinear

from .conftest import crop, reference_decode

EXTRAS = [(False, False), (True, True)]  # (node_bias, layernorm)


def _spec(basis: str, node_bias: bool = False, layernorm: bool = False) -> KanSpec:
    grid = 0 if basis == "tanh" else 5
    return KanSpec((2, 6, 5, 3), grid_size=grid, basis=basis,
                   node_bias=node_bias, layernorm=layernorm)  # fmt: skip


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("node_bias, layernorm", EXTRAS)
def test_export_load_keeps_the_function(basis: str, node_bias: bool, layernorm: bool) -> None:
    torch.manual_seed(1)
    spec = _spec(basis, node_bias, layernorm)
    model = build(spec)
    with torch.no_grad():  # non-trivial values everywhere (biases, LayerNorm affine, scales)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(500, 2) * 2.4 - 1.2  # also outside the grid
    expected = model(x)
    arrays = export_arrays(model, spec)  # checks the shapes of spec.tensor_shapes()
    assert [a.shape for a in arrays] == [s for _, s in spec.tensor_shapes()]
    fresh = build(spec)
    load_arrays(fresh, spec, arrays)
    torch.testing.assert_close(fresh(x), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # and the decoding evaluation of the loaded network
        torch.testing.assert_close(fresh.infer(x), model.infer(x), rtol=1e-5, atol=1e-5)
    names = [n for n, _ in spec.tensor_shapes()]
    assert any(n.endswith(".bias") for n in names) == node_bias
    assert any("ln_" in n for n in names) == layernorm
    assert not any(n.startswith("layers.0.ln_") for n in names)  # never on the (x, y) input


@pytest.mark.parametrize("basis", BASES)
def test_header_round_trip(basis: str) -> None:
    spec = _spec(basis, node_bias=True, layernorm=True)
    qp = tuple(QuantParams(-1.0, 0.01, 7) for _ in spec.tensor_shapes())
    q = [np.zeros(s, dtype=np.uint32) for _, s in spec.tensor_shapes()]
    header = FileHeader(9, 11, 7, spec, qp)
    header2, _ = read_bytes(write_bytes(header, q))
    assert header2.spec == spec


def test_tanh_needs_grid_zero_and_others_not() -> None:
    spec = _spec("rbf")
    qp = tuple(QuantParams(-1.0, 0.01, 7) for _ in spec.tensor_shapes())
    data = bytearray(write_bytes(FileHeader(9, 11, 7, spec, qp),
                                 [np.zeros(s, np.uint32) for _, s in spec.tensor_shapes()]))
    # the basis field follows the hidden widths; rewrite it as tanh (5): grid 5 is then invalid
    from kancoin.format.container import _sections

    fields = _sections(spec)
    offset = sum(f.nbits for f in fields[: [f.name for f in fields].index("basis")])
    bits = "".join(f"{b:08b}" for b in data)
    bits = bits[:offset] + f"{5:03b}" + bits[offset + 3 :]
    patched = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    with pytest.raises(KancoinError, match="grid_size"):
        read_bytes(patched)


@pytest.mark.parametrize("basis", BASES)
def test_quantized_export_equals_what_was_evaluated(basis: str) -> None:
    torch.manual_seed(0)
    spec = _spec(basis, node_bias=True, layernorm=True)
    model = build(spec)
    params = qat.attach(model, spec, [6] * len(spec.tensor_shapes()))
    seen = render(model, spec, 12, 14)
    ints = qat.export_quantized(model, spec, params)
    data = write_bytes(FileHeader(12, 14, 6, spec, tuple(params)), ints)
    assert np.array_equal(decode_bytes(data).pixels, seen.numpy())


@pytest.mark.parametrize("basis", BASES)
def test_every_basis_encodes_within_budget_and_reports_the_decoded_psnr(basis: str) -> None:
    px = crop(24, 32)
    extras = dict(basis=basis, node_bias=basis == "rbf", layernorm=basis == "rbf")
    opts = EncodeOptions(arch="kan", bpp=4.0, iters=60, qat=0.25, device="cpu", threads=1,
                         **extras)
    res = encode_pixels(px, opts)
    header, _ = read_bytes(res.data)
    assert header.spec == res.spec and header.spec.basis == basis
    assert len(res.data) <= budget_bytes(4.0, 24, 32)
    assert len(res.data) > 0.7 * budget_bytes(4.0, 24, 32)  # the budget is used
    # the reported PSNR is the file's: checked against an independent float64 decode
    assert res.psnr == pytest.approx(psnr(reference_decode(res.data), px), abs=0.05)
    assert res.psnr > 12.0  # it learned something (a constant grey is ~ 11 dB here)


def test_grid_extension_preserves_the_function() -> None:
    torch.manual_seed(0)
    layer = KANLinear(3, 4, grid_size=5, backend="dense")
    with torch.no_grad():
        layer.spline_weight.normal_(0, 0.5)
        layer.spline_scaler.uniform_(0.5, 1.5)
    x = torch.rand(400, 3) * 2 - 1
    before = layer(x).detach()
    layer.extend_grid(10)  # a refinement: exactly representable
    assert layer.grid_size == 10 and layer.spline_weight.shape == (4, 3, 13)
    torch.testing.assert_close(layer(x), before, rtol=1e-4, atol=1e-4)
    layer.extend_grid(17)  # not a refinement: least squares, close
    assert float((layer(x).detach() - before).abs().max()) < 0.05


def test_grid_stages() -> None:
    stages = family("kan").train_stages
    spec = KanSpec((2, 4, 3), grid_size=34)
    assert stages(spec, 0) == ()
    assert stages(spec, 2) == ((9, 9), (17, 17))
    fine_first = KanSpec((2, 4, 4, 3), grid_size=20, first_grid_size=128)
    assert stages(fine_first, 1) == ((64, 10, 10),)


def test_grid_extension_and_lbfgs_encode_round_trip() -> None:
    px = crop(24, 32)
    for extra in (dict(grid_extend=2), dict(optimizer="lbfgs")):
        opts = EncodeOptions(arch="kan", bpp=4.0, iters=40, qat=0.25, device="cpu", threads=1,
                             **extra)
        res = encode_pixels(px, opts)
        assert res.psnr == pytest.approx(psnr(reference_decode(res.data), px), abs=0.05), extra
        assert res.psnr > 12.0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(arch="siren", basis="rbf"), "--basis: not an option of --arch siren"),
        (dict(basis="spline"), "--basis"),
        (dict(arch="kan", basis="rbf", grid_extend=1), "bspline"),
        (dict(optimizer="sgd"), "--optimizer"),
    ],
)
def test_bad_combinations_are_refused(options: dict, message: str) -> None:
    """Refused when the options are made, before any work (one line)."""
    with pytest.raises(KancoinError, match=message) as err:
        EncodeOptions(**options)
    assert "\n" not in str(err.value)


def test_non_bspline_specs_normalise_the_order_and_check_the_grid() -> None:
    assert KanSpec((2, 3, 3), grid_size=4, spline_order=5, basis="rbf").spline_order == 3
    with pytest.raises(ValueError, match="grid_size"):
        KanSpec((2, 3, 3), grid_size=4, basis="tanh")
    with pytest.raises(ValueError, match="grid_size"):
        KanSpec((2, 3, 3), grid_size=0, basis="fourier")


def test_tensor_allocation_needs_range_coding() -> None:
    with pytest.raises(KancoinError, match="--coding range"):
        EncodeOptions(arch="kan", coding="fixed", bit_alloc="tensor")
