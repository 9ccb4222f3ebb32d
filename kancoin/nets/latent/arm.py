"""The shape of the latents' autoregressive network (its arithmetic and coding:
``kancoin.format.arm``): which causal neighbours it reads and which tensors a file stores."""

from __future__ import annotations

# (rows up, columns left): left, left-left, up-left, up, up-right, up-up, up-left-left; all on
# earlier lines 2r + c than the value they predict
NEIGHBOURS = ((0, 1), (0, 2), (1, 1), (1, 0), (1, -1), (2, 0), (1, 2))
TAPS = len(NEIGHBOURS)
MAX_HIDDEN = 31  # what the header's 5-bit field holds


def tensor_shapes(hidden: int) -> list[tuple[str, tuple[int, ...]]]:
    """The network's stored tensors in file order, TAPS → hidden → hidden → 2: (name, shape),
    weights (out, in) then biases (out,)."""
    dims = [(TAPS, hidden), (hidden, hidden), (hidden, 2)]
    out: list[tuple[str, tuple[int, ...]]] = []
    for n, (i, o) in enumerate(dims):
        out += [(f"arm.{n}.weight", (o, i)), (f"arm.{n}.bias", (o,))]
    return out
