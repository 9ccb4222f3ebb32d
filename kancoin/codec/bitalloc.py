"""Per-tensor step allocation under a byte budget (encoder only, range coding).

Rate control first scales every tensor's quantization step by one common factor so the coded
file just fits. Tensors differ in how much a coarser step costs in PSNR (a first-layer spline
table moves every pixel, a large middle-layer table less so), so ``allocate`` then trades
precision between tensors: in half-octave moves of single steps, it makes one tensor finer and
another coarser (or one finer alone, where the budget has room) whenever the *measured*
distortion of the quantized network drops and the *real* coded size stays within the cap.
Greedy marginal analysis: each round measures every single move, predicts pair moves as the sum
of their parts, and accepts the best pair only after measuring it.
"""

from __future__ import annotations

from collections.abc import Callable

from kancoin.format.quant import QuantParams, rescale

MOVE = 2.0**0.5  # one move: the step × or ÷ √2 (half a bit)


def allocate(
    base: list[QuantParams],
    size: Callable[[list[QuantParams]], int],
    distortion: Callable[[list[QuantParams]], float],
    cap: int,
    rounds: int = 6,
) -> tuple[list[QuantParams], dict]:
    """Per-tensor step factors around ``base`` (already within ``cap``).

    size(qparams) -> coded file bytes; distortion(qparams) -> MSE of the rebuilt network.
    Returns the allocation and a log {"rounds", "evaluations", "start_mse", "mse"}.
    """
    n = len(base)
    exps = [0] * n

    def params(e: list[int]) -> list[QuantParams] | None:
        try:
            return [rescale(qp, MOVE**k) for qp, k in zip(base, e)]
        except ValueError:  # finer than 16 bits can span
            return None

    cur = params(exps)
    if cur is None:  # base itself must be representable: a caller's bug
        raise ValueError("allocate: the base ranges cannot be rescaled")
    cur_r, cur_d = size(cur), distortion(cur)
    log = {"rounds": 0, "evaluations": 1, "start_mse": cur_d}
    for _ in range(rounds):
        moves: dict[tuple[int, int], tuple[int, float]] = {}  # (tensor, ±1) -> (bytes, mse)
        for i in range(n):
            for d in (-1, 1):
                e = exps.copy()
                e[i] += d
                qps = params(e)
                if qps is not None:
                    moves[(i, d)] = (size(qps), distortion(qps))
                    log["evaluations"] += 1
        # candidates: one tensor finer alone, or finer + another coarser; predicted additively
        cands: list[tuple[float, list[int]]] = []
        for (i, d), (r, dist) in moves.items():
            if d == -1 and r <= cap and dist < cur_d:
                e = exps.copy()
                e[i] -= 1
                cands.append((dist, e))
        for (i, di), (ri, disti) in moves.items():
            if di != -1:
                continue
            for (j, dj), (rj, distj) in moves.items():
                if dj != 1 or j == i:
                    continue
                pred_r = ri + rj - cur_r
                pred_d = disti + distj - cur_d
                if pred_r <= cap and pred_d < cur_d:
                    e = exps.copy()
                    e[i] -= 1
                    e[j] += 1
                    cands.append((pred_d, e))
        cands.sort(key=lambda c: c[0])
        accepted = False
        for _, e in cands[:4]:  # verify the best predictions by measuring them
            qps = params(e)
            if qps is None:
                continue
            r, dist = size(qps), distortion(qps)
            log["evaluations"] += 1
            if r <= cap and dist < cur_d:
                exps, cur, cur_r, cur_d, accepted = e, qps, r, dist, True
                break
        log["rounds"] += 1
        if not accepted:
            break
    log["mse"] = cur_d
    log["exponents"] = exps
    return cur, log
