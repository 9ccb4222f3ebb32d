"""The three autoencoder families of the study, and the sizes that match their parameters.

- ``kan`` (the paper's): encoder KAN layer (D -> H) -> ReLU -> dense (H -> b); decoder dense
  (b -> H) -> ReLU -> KAN layer (H -> D). Our B-spline ``KANLinear`` (the codec's fused CPU
  kernels in training), grid ``grid_size``, order ``spline_order``, on [-1, 1].
- ``mlp``: the same shape with dense layers in place of the KAN layers.
- ``cnn``: two stride-2 3×3 convolutions (C -> c1 -> c2) and a dense layer to b; the decoder
  mirrors it with 4×4 transposed convolutions.

Every family sees its input scaled to [-1, 1] (the KAN's grid) and ends in a sigmoid, so the
reconstructions lie in [0, 1] as the data does. Samples are (N, C, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kancoin.errors import KancoinError
from kancoin.nets.kan.layers import KANLinear

# The autoencoder families (not the codec's network families): KAN is the reference the others
# are matched to
KAN, CNN, MLP = FAMILIES = ("kan", "cnn", "mlp")
PARAM_TOLERANCE = 0.05  # "equal parameters": within 5 %


@dataclass(frozen=True)
class AESize:
    """One network's size: ``hidden`` H (kan, mlp), ``channels`` (c1, c2) (cnn)."""

    family: str
    bottleneck: int
    hidden: int = 0
    channels: tuple[int, int] = (0, 0)
    grid_size: int = 5
    spline_order: int = 3
    backend: str = "auto"  # the KAN layer's evaluation (``KANLinear`` backends)

    def describe(self) -> str:
        if self.family == KAN:
            return f"KAN {self.hidden} (grid {self.grid_size}, order {self.spline_order})"
        if self.family == "mlp":
            return f"MLP {self.hidden}"
        return f"CNN {self.channels[0]}-{self.channels[1]}"


class AutoEncoder(nn.Module):
    """``encode`` (N, C, H, W) -> (N, b); ``decode`` (N, b) -> (N, C, H, W) in [0, 1]."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, shape: tuple[int, int, int]):
        super().__init__()
        self.encoder, self.decoder, self.shape = encoder, decoder, shape

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(2 * x - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).reshape(-1, *self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _conv_side(s: int) -> int:
    return (s + 1) // 2  # a 3×3 stride-2 convolution with padding 1


def build(size: AESize, shape: tuple[int, int, int]) -> AutoEncoder:
    """The network of ``size`` for samples of ``shape`` (C, H, W)."""
    c, h, w = shape
    d, b = c * h * w, size.bottleneck
    if size.family in ("kan", "mlp"):
        hid = size.hidden

        def wide(n_in: int, n_out: int) -> nn.Module:
            if size.family == "mlp":
                return nn.Linear(n_in, n_out)
            return KANLinear(n_in, n_out, grid_size=size.grid_size, spline_order=size.spline_order,
                             backend=size.backend)  # fmt: skip

        enc = nn.Sequential(nn.Flatten(), wide(d, hid), nn.ReLU(), nn.Linear(hid, b))
        dec = nn.Sequential(nn.Linear(b, hid), nn.ReLU(), wide(hid, d))
        return AutoEncoder(enc, dec, shape)
    if size.family != "cnn":
        raise KancoinError(f"unknown autoencoder family {size.family!r} (one of {FAMILIES})")
    c1, c2 = size.channels
    h2, w2 = _conv_side(_conv_side(h)), _conv_side(_conv_side(w))
    enc = nn.Sequential(
        nn.Conv2d(c, c1, 3, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 3, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(c2 * h2 * w2, b),
    )  # fmt: skip
    dec = nn.Sequential(
        nn.Linear(b, c2 * h2 * w2), nn.ReLU(), nn.Unflatten(1, (c2, h2, w2)),
        nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c1, c, 4, 2, 1),
        _Crop(h, w),
    )  # fmt: skip
    return AutoEncoder(enc, dec, shape)


class _Crop(nn.Module):
    """Odd sides: the transposed convolutions give 4·ceil(s/4) ≥ s; keep the first s."""

    def __init__(self, h: int, w: int):
        super().__init__()
        self.h, self.w = h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.h, : self.w]


def count_params(size: AESize, shape: tuple[int, int, int]) -> int:
    """Trainable parameters, counted in closed form (the tests check it against the built
    network). A KAN edge holds a base weight, G + k coefficients and a scale."""
    c, h, w = shape
    d, b = c * h * w, size.bottleneck
    if size.family in ("kan", "mlp"):
        hid = size.hidden
        dense = hid * b + b + b * hid + hid
        if size.family == "mlp":
            return dense + d * hid + hid + hid * d + d
        per_edge = size.grid_size + size.spline_order + 2
        return dense + 2 * d * hid * per_edge
    c1, c2 = size.channels
    s2 = _conv_side(_conv_side(h)) * _conv_side(_conv_side(w))
    conv = 9 * c * c1 + c1 + 9 * c1 * c2 + c2
    deconv = 16 * c2 * c1 + c1 + 16 * c1 * c + c
    return conv + deconv + (c2 * s2 * b + b) + (b * c2 * s2 + c2 * s2)


def paper_size(family: str, bottleneck: int, hidden: int, channels: tuple[int, int],
               grid_size: int, spline_order: int) -> AESize:  # fmt: skip
    """The as-published comparison: KAN and MLP at ``hidden``, the CNN at ``channels``."""
    if family == "cnn":
        return AESize("cnn", bottleneck, channels=channels)
    return AESize(family, bottleneck, hidden=hidden, grid_size=grid_size,
                  spline_order=spline_order)  # fmt: skip


def match_params(family: str, target: int, bottleneck: int, shape: tuple[int, int, int]) -> AESize:
    """The ``family`` network (mlp: its width; cnn: its two channel counts) whose parameter
    count is nearest ``target``; an error if none is within 5 %."""
    if family == "mlp":
        c, h, w = shape
        d = c * h * w
        per = 2 * d + 2 * bottleneck + 2  # parameters per unit of width
        hid = max(1, round((target - bottleneck - d) / per))
        best = AESize("mlp", bottleneck, hidden=hid)
    elif family == "cnn":
        best, gap = None, math.inf
        for c1 in range(1, 513):
            lo = count_params(AESize("cnn", bottleneck, channels=(c1, c1)), shape)
            if lo > 1.1 * target:
                break
            for c2 in range(c1, 4 * c1 + 1):  # the usual widening: c2 = c1 … 4·c1
                p = count_params(AESize("cnn", bottleneck, channels=(c1, c2)), shape)
                if abs(p - target) < gap:
                    best, gap = AESize("cnn", bottleneck, channels=(c1, c2)), abs(p - target)
                if p > target:
                    break
        if best is None:
            best = AESize("cnn", bottleneck, channels=(1, 1))
    else:
        raise KancoinError(f"cannot match the parameters of a {family!r} network")
    got = count_params(best, shape)
    if abs(got - target) > PARAM_TOLERANCE * target:
        raise KancoinError(
            f"no {family.upper()} has {target:,} parameters within 5 % at bottleneck "
            f"{bottleneck} (nearest {got:,})"
        )
    return best
