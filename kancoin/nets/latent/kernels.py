"""The latent synthesis in numba: the same bits as ``render``'s numpy arithmetic, faster.

A decode uses these only in a process that has numba loaded already (an encode, an eval):
starting numba costs more than a whole numpy decode (``render``). Every value is formed as
``render.layer_forward`` forms it, operation for operation: the exp is ``render.exp32_basic``'s
arithmetic, which gives ``render.exp32``'s float32 everywhere, and each output sums its inputs
in order as (((T0 + t T1) + t² T2) + t³ T3) + s·W. Without fastmath LLVM fuses no
multiply-add, so every operation rounds as numpy's does. tests/test_latent_render.py compares
the two paths bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kancoin.nets.latent import render as _r

_F32 = np.float32
_C = np.array(_r._EXP_COEF, np.float64)
_EXP2_32 = _r._EXP2_32
_STEP_HI, _STEP_LO, _INV_STEP, _ROUND = _r._STEP_HI, _r._STEP_LO, _r._INV_STEP, _r._ROUND


@njit(cache=True, nogil=True)
def _exp32_basic(x):
    """``render.exp32_basic`` for one float32 (float64 inside)."""
    z = np.float64(x)
    if z != z:
        return _F32(z)
    z = min(max(z, -110.0), 110.0)
    k = (z * _INV_STEP + _ROUND) - _ROUND
    r = (z - k * _STEP_HI) - k * _STEP_LO
    p = r * _C[5] + _C[4]
    for q in range(3, -1, -1):
        p = p * r
        p = p + _C[q]
    ki = np.int64(k)
    p = p * _EXP2_32[ki & 31]
    p = p * math.ldexp(1.0, ki >> 5)  # 2^n, exactly
    return _F32(p)


@njit(cache=True, nogil=True)
def layer_forward(x, table, g0, inv_h, bias, y):
    """x (I, N), table (I, k + 2, n_int + 1, O) (``render.spline_table``), bias (O,) -> y (O, N)."""
    n_in, n_rows, n_int1, n_out = table.shape
    k = n_rows - 2
    n_int = n_int1 - 1
    n = x.shape[1]
    g0 = _F32(g0)
    inv_h = _F32(inv_h)
    acc = np.empty(n_out, np.float32)
    for j in range(n):
        for o in range(n_out):
            acc[o] = 0.0
        for i in range(n_in):
            xi = x[i, j]
            # exp32_basic alone gives exp32's bits (it decides wherever they could differ, and
            # is within 20 units of the true value elsewhere, where exp32 rounds correctly)
            silu = xi / (_F32(1.0) + _exp32_basic(-xi))
            pos = (xi - g0) * inv_h
            m = n_int
            t = _F32(0.0)
            if pos >= 0 and pos < n_int:  # NaN is outside
                m = int(pos)
                t = pos - _F32(m)
            if k == 3:
                t2 = t * t
                t3 = t2 * t
                for o in range(n_out):
                    term = table[i, 0, m, o] + table[i, 1, m, o] * t
                    term = term + table[i, 2, m, o] * t2
                    term = term + table[i, 3, m, o] * t3
                    term = term + silu * table[i, k + 1, 0, o]
                    acc[o] = acc[o] + term
            else:
                for o in range(n_out):
                    v = _F32(1.0)
                    a = acc[o]
                    for p in range(k + 1):
                        a = a + v * table[i, p, m, o]
                        v = v * t
                    acc[o] = a + silu * table[i, k + 1, 0, o]
        for o in range(n_out):
            y[o, j] = acc[o] + bias[o]
