"""Rate control: the chosen network's file never exceeds the budget, and fills it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kancoin.codec.ratecontrol import budget_bytes, choose
from kancoin.errors import KancoinError
from kancoin.format.container import file_bytes
from kancoin.nets import NetSpec, Overrides
from kancoin.nets.kan import KanSpec
from kancoin.nets.kan.sizing import FIRST_LAYER_SHARE, first_grid
from kancoin.nets.siren import SIREN_DEPTH, SirenSpec


def choose_kan(*args, **kw) -> KanSpec:
    return choose("kan", *args, **kw)


def choose_siren(*args, **kw) -> SirenSpec:
    return choose("siren", *args, **kw)


@pytest.mark.parametrize("size", [(512, 768), (768, 512), (100, 140), (1000, 1000)])
@pytest.mark.parametrize("bpp", [0.05, 0.15, 0.3, 0.6, 1.2])
@pytest.mark.parametrize("bits", [6, 9, 12])
def test_kan_fits_and_fills(size, bpp, bits) -> None:
    h, w = size
    cap = budget_bytes(bpp, h, w)
    try:
        spec = choose_kan(h, w, 3, bpp, bits)
    except KancoinError:
        smallest = KanSpec((2, 1, 1, 1, 3), grid_size=1)
        assert file_bytes(smallest, bits) > cap  # impossible only when nothing fits
        return
    assert file_bytes(spec, bits) <= cap
    shared = spec.first_grid_size == spec.grid_size  # else the first layer's grid stays
    first = 0 if shared else spec.first_grid_size
    bigger = replace(spec, grid_size=spec.grid_size + 1, first_grid_size=first)
    assert file_bytes(bigger, bits) > cap  # the grid fills the budget
    assert spec.first_grid_size >= spec.grid_size
    assert spec.first_grid_size <= max(max(h, w) // 2, spec.grid_size)


def test_default_at_0_3_bpp_is_three_hidden_layers_as_wide_as_a_grid_of_10_allows() -> None:
    spec = choose_kan(512, 768, 3, 0.3, 9)
    assert len(spec.hidden) == 3 and spec.hidden[0] >= 12
    assert spec.first_grid_size > spec.grid_size >= 10
    # one unit wider, with the first layer's share of the weights, leaves the others < 10
    w = spec.hidden[0] + 1
    g1 = first_grid(512, 768, w, budget_bytes(0.3, 512, 768) * 8 / 9, 3, FIRST_LAYER_SHARE)
    wider = choose_kan(512, 768, 3, 0.3, 9, Overrides(width=w, first_grid_size=g1))
    assert wider.grid_size < 10
    size = file_bytes(spec, 9)
    assert 0.28 <= size * 8 / (512 * 768) <= 0.30


def test_first_layer_gets_a_fine_grid_of_about_a_third_of_the_weights() -> None:
    spec = choose_kan(512, 768, 3, 0.3, 9, coding=1, bpw=6.0)
    first = sum(n for name, n in _sizes(spec) if name.startswith("layers.0."))
    assert spec.first_grid_size > 2 * spec.grid_size
    assert 0.25 <= first / spec.n_params <= 0.4
    same = choose_kan(512, 768, 3, 0.3, 9, Overrides(first_grid_size=0), coding=1, bpw=6.0)
    assert same.first_grid_size == same.grid_size
    siren_like = choose_kan(512, 768, 3, 0.3, 9, Overrides(basis="rbf"), coding=1, bpw=6.0)
    assert siren_like.first_grid_size == siren_like.grid_size  # only B-splines get one


def _sizes(spec: NetSpec) -> list[tuple[str, int]]:
    from math import prod

    return [(name, prod(shape)) for name, shape in spec.tensor_shapes()]


def test_overrides_are_respected() -> None:
    spec = choose_kan(512, 768, 3, 0.3, 9, Overrides(width=12, depth=2, spline_order=2))
    assert spec.hidden == (12, 12) and spec.spline_order == 2
    spec = choose_kan(512, 768, 3, 0.3, 9, Overrides(grid_size=10))
    assert spec.grid_size == 10


def test_siren_follows_coin() -> None:
    spec = choose_siren(512, 768, 3, 0.3, 16)
    assert len(spec.widths) == SIREN_DEPTH + 1 == 11  # 10 layers: 9 sine + linear output
    cap = budget_bytes(0.3, 512, 768)
    assert file_bytes(spec, 16) <= cap
    w = spec.hidden[0]
    wider = SirenSpec((2, *([w + 1] * 9), 3))
    assert file_bytes(wider, 16) > cap


@pytest.mark.parametrize(
    "ov, flag",
    [(Overrides(grid_size=8), "--grid-size"), (Overrides(spline_order=2), "--spline-order"),
     (Overrides(basis="rbf"), "--basis"), (Overrides(first_grid_size=0), "--first-grid-size")],
)  # fmt: skip
def test_siren_refuses_kan_only_overrides(ov: Overrides, flag: str) -> None:
    with pytest.raises(KancoinError, match=f"{flag}: not an option of --arch siren"):
        choose_siren(512, 768, 3, 0.3, 16, ov)
    assert choose_siren(512, 768, 3, 0.3, 16, Overrides(width=20)).hidden == (20,) * 9


@pytest.mark.parametrize(
    "bpp,bits,msg",
    [(0.3, 1, "--bits"), (0.3, 17, "--bits"), (0.0, 9, "--bpp"), (0.0001, 9, "too small")],
)
def test_impossible_requests(bpp, bits, msg) -> None:
    with pytest.raises(KancoinError, match=msg):
        choose_kan(512, 768, 3, bpp, bits)
