"""The MLP synthesis in fixed point (format 10, the latent family's ``fixed_frac`` F, 14..20).

Activations are integers in units of 2^−F and each layer's weights and bias are integers
times one power of two, bounded so that every product and partial sum of a matrix product is
an integer below 2^52 in those units: float64 BLAS then gives the exact sum whatever its
order, threads or fused multiply-adds, so a file decodes to the same bits on any machine, at
BLAS speed (the float32 elementwise synthesis of format 9 forms each sum in a fixed order,
about 2.2× slower to render a 768×512 image). Per layer, with x the inputs and a row of ones:

    z = M · [x; 1]              M (O, I + 1): weights and bias (``FixedDense.build``)
    hidden:  x' = table[floor(clip(z, 0, top) + ½)]   z = (y − LO)·2^T, y the layer's output
    last:    the outputs, float64
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# GELU is read from a table of its values every 2^−12 (the nearest point, rounded to 2^−F:
# within 1.5e−4 of GELU at F = 16; 0.3 % of kodim23's values at 0.3 bpp decode one level off
# the float32 decoder's, PSNR within 0.0001 dB; interpolating between coarser points cost 3×
# the time).
FIXED_LO, FIXED_HI = -8.0, 512.0  # the table's domain: GELU(−8) ≈ −3e−21 (tanh form), and
# hidden values past 512 (trained networks stay under ~70) are held at GELU(512) = 512
FIXED_TABLE_BITS = 12  # table points per unit: 2^12 (17 MB, built once per process and F)
GELU_IS_X = 8.0  # the tanh-form GELU is x itself in float64 from here on
FIXED_FEATURE_BOUND = 4096.0  # features clamp to ±4096 (trained files stay under ~15)


@lru_cache(maxsize=2)
def gelu_table(frac: int) -> np.ndarray:
    """GELU (tanh form) at x = FIXED_LO + j / 2^T, j = 0 … (HI − LO)·2^T, in units of 2^−F,
    rounded: (M,) float64 integers, the same on every machine (basic operations and
    ``exp64_basic``)."""
    from kancoin.nets.latent.render import exp64_basic

    per_unit = 1 << FIXED_TABLE_BITS
    j = np.arange(int(FIXED_HI - FIXED_LO) * per_unit + 1.0)
    # x · 2^F, exactly: GELU(x) from GELU_IS_X on (there exp(−u) < 1e−21: 1 + exp(−u) is 1)
    table = (FIXED_LO * per_unit + j) * 2.0 ** (frac - FIXED_TABLE_BITS)
    head = int(GELU_IS_X - FIXED_LO) * per_unit
    x = table[:head] * 2.0**-frac
    u = (x * x * x * 0.044715 + x) * (2.0 * np.sqrt(2.0 / np.pi))
    table[:head] = np.rint(x / (1.0 + exp64_basic(-u)) * 2.0**frac)
    table.flags.writeable = False  # shared by every decode of the process
    return table


@dataclass
class FixedDense:
    """One MLP layer in fixed point, for ``fixed_synthesize``."""

    matrix: np.ndarray  # (O, I + 1) float64: integer weights, then the bias (against a row
    # of ones), all times one power of two
    hidden: bool  # GELU after it: its outputs in table units, (y − FIXED_LO)·2^T

    @classmethod
    def build(cls, weight, bias, hidden: bool, bound: float, frac: int) -> FixedDense:
        """The layer from its stored weight (O, I) and bias (O,), for inputs |x| ≤ ``bound``
        (in units of 2^−``frac``: integers up to bound·2^F)."""
        w = np.asarray(weight, np.float32).astype(np.float64)
        b = np.asarray(bias, np.float32).astype(np.float64)
        if hidden:
            b = b - FIXED_LO
        n_in = w.shape[1]
        # integers of p bits: I + 2 terms, each ≤ 2^p · bound · 2^F, sum below 2^52 (integer
        # arithmetic: a library log2 one unit under a power of two would change p)
        p = ((1 << 52) // ((n_in + 2) * int(bound))).bit_length() - 1 - frac
        # the unit 2^−g: the largest weight, and the bias against a term's bound, under 2^p
        top = max(float(np.abs(w).max(initial=0.0)), float(np.abs(b).max(initial=0.0)) / bound)
        g = p - (int(np.frexp(top)[1]) if top > 0 else 0)
        ints = np.concatenate([np.rint(np.ldexp(w, g)), np.rint(np.ldexp(b, g + frac))[:, None]],
                              axis=1)  # fmt: skip
        shift = (FIXED_TABLE_BITS if hidden else 0) - g - frac
        return cls(np.ldexp(ints, shift), hidden)


def fixed_layers(spec, arrays: list[np.ndarray]) -> list[FixedDense]:
    """The MLP synthesis's layers from the stored tensors (file order), in fixed point; the
    GELU table built here, before a render's threads would each build it."""
    gelu_table(spec.fixed_frac)
    it = iter(arrays[spec.first_grid + spec.levels :])
    dims = spec.layer_dims()
    out = []
    for j, _ in enumerate(dims):
        weight, bias = next(it), next(it)
        bound = FIXED_FEATURE_BOUND if j == 0 else FIXED_HI
        out.append(FixedDense.build(weight, bias, j < len(dims) - 1, bound, spec.fixed_frac))
    return out


def fixed_synthesize(layers: list[FixedDense], feats: np.ndarray, frac: int) -> np.ndarray:
    """feats (L, N) float32 -> outputs (C, N) float64 through the fixed-point MLP. Features
    are rounded to units of 2^−F and clamped to ±FIXED_FEATURE_BOUND (NaN to the bound); a
    hidden layer's outputs z (table units) clamp to the table, and GELU is its entry at
    floor(z + ½)."""
    n = feats.shape[1]
    table = gelu_table(frac)
    top = float(len(table) - 1)
    lim = FIXED_FEATURE_BOUND * 2.0**frac
    x = np.empty((feats.shape[0] + 1, n))
    np.multiply(feats, 2.0**frac, out=x[:-1], dtype=np.float64)  # exact, in float64
    np.rint(x[:-1], out=x[:-1])
    np.fmin(x[:-1], lim, out=x[:-1])  # fmin/fmax: a NaN becomes the bound
    np.fmax(x[:-1], -lim, out=x[:-1])
    x[-1] = 1.0
    for layer in layers:
        z = layer.matrix @ x  # exact: integers below 2^52 in its units
        if not layer.hidden:
            return z
        np.clip(z, 0.0, top, out=z)
        z += 0.5
        x = np.empty((z.shape[0] + 1, n))
        np.take(table, z.astype(np.intp), out=x[:-1])  # z ≥ 0: truncation floors
        x[-1] = 1.0
    raise ValueError("fixed_synthesize: no output layer")
