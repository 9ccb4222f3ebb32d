"""Bjøntegaard deltas (VCEG-M33): how much less rate a curve needs than an anchor for the same
quality (BD-rate, %), and how much more quality it gives at the same rate (BD-PSNR, dB).

Each curve is fitted with a cubic polynomial, log-rate as a function of quality (BD-rate) or
quality as a function of log-rate (BD-PSNR), and the two fits are integrated over the interval
both curves cover, as in VCEG-M33 (and the ``bjontegaard`` package's ``polyfit`` method). A
curve needs at least 4 points; curves whose intervals do not overlap have no delta.

``write_bdrate`` compares every setting of a results folder with an anchor: a setting of that
folder, or a published curve of ``kancoin.eval.references.rd_points`` (``--anchor NAME``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from kancoin.errors import KancoinError
from kancoin.fileio import write_atomic

MIN_POINTS = 4
Curve = list[tuple[float, float]]  # (rate, quality), e.g. (bpp, PSNR)


def _points(curve: Curve, name: str) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted(
        (float(r), float(q)) for r, q in curve
        if r is not None and q is not None and math.isfinite(r) and math.isfinite(q)
    )  # fmt: skip
    if any(r <= 0 for r, _ in pts):
        raise KancoinError(f"{name}: BD-rate needs positive rates")
    rates, quality = {r for r, _ in pts}, {q for _, q in pts}
    n = min(len(rates), len(quality))
    if n < MIN_POINTS:
        raise KancoinError(
            f"{name}: BD-rate needs at least {MIN_POINTS} rate points with distinct rates and "
            f"qualities, has {n}"
        )
    return np.log(np.array([r for r, _ in pts])), np.array([q for _, q in pts])


def _overlap(a: np.ndarray, b: np.ndarray, what: str, names: tuple[str, str]) -> tuple:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if not lo < hi:
        raise KancoinError(
            f"{names[1]} vs {names[0]}: their {what} ranges do not overlap "
            f"({b.min():.4g}–{b.max():.4g} vs {a.min():.4g}–{a.max():.4g})"
        )
    return lo, hi


def _mean_of_fit(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """The mean over [lo, hi] of the cubic least-squares fit y(x)."""
    p = np.polyint(np.polyfit(x, y, 3))
    return float((np.polyval(p, hi) - np.polyval(p, lo)) / (hi - lo))


def bd_rate(anchor: Curve, test: Curve, names: tuple[str, str] = ("anchor", "test")) -> float:
    """BD-rate of ``test`` against ``anchor`` in percent (negative: ``test`` needs less rate for
    the same quality), over the quality interval both cover."""
    la, qa = _points(anchor, names[0])
    lt, qt = _points(test, names[1])
    lo, hi = _overlap(qa, qt, "quality", names)
    diff = _mean_of_fit(qt, lt, lo, hi) - _mean_of_fit(qa, la, lo, hi)
    return (math.exp(diff) - 1.0) * 100.0


def bd_quality(anchor: Curve, test: Curve, names: tuple[str, str] = ("anchor", "test")) -> float:
    """BD-PSNR (or the delta of any quality in dB) of ``test`` against ``anchor``: the mean
    quality gain at the same rate, over the log-rate interval both cover."""
    la, qa = _points(anchor, names[0])
    lt, qt = _points(test, names[1])
    lo, hi = _overlap(la, lt, "rate", names)
    return _mean_of_fit(lt, qt, lo, hi) - _mean_of_fit(la, qa, lo, hi)


def _curves(summary: list[dict]) -> dict[str, dict[str, Curve]]:
    """{setting: {"psnr": [(bpp, psnr-rgb)], "ms-ssim": [(bpp, ms-ssim-db)]}} of a summary."""
    out = {}
    for e in summary:
        res = e["results"]
        bpp = res.get("bpp", [])
        out[e["name"]] = {
            "psnr": list(zip(bpp, res.get("psnr-rgb", []))),
            "ms-ssim": list(zip(bpp, res.get("ms-ssim-db", [None] * len(bpp)))),
        }
    return out


def find_anchor(name: str, curves: dict[str, dict[str, Curve]]) -> tuple[str, dict, str]:
    """(name, curves, where) of ``--anchor NAME``: a setting of the folder, else a published
    curve, matched exactly, then case-insensitively, then as the only one starting so."""
    from kancoin.eval.references import rd_points

    published = {
        k: {"psnr": [(p["bpp"], p["psnr"]) for p in pts], "ms-ssim": []}
        for k, pts in rd_points().items()
    }  # fmt: skip
    every = [(k, v, "this folder") for k, v in curves.items()]
    every += [(k, v, "published") for k, v in published.items() if k not in curves]
    want = name.strip()
    for match in (
        lambda k: k == want,
        lambda k: k.lower() == want.lower(),
        lambda k: k.lower().startswith(want.lower()),
    ):
        found = [e for e in every if match(e[0])]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(repr(e[0]) for e in found)
            raise KancoinError(f"--anchor {name!r} is ambiguous: {names}")
    names = ", ".join(repr(k) for k, _, _ in every)
    raise KancoinError(f"--anchor {name!r}: no such setting or published curve (have {names})")


def bd_table(summary: list[dict], anchor: str) -> dict:
    """BD-rate and BD-PSNR (and BD-rate on MS-SSIM in dB, where both curves have it) of every
    setting of ``summary`` against ``anchor``; a setting that has no delta gets ``note`` (why).
    The anchor's own curve must allow one (4 points): a one-line error otherwise."""
    curves = _curves(summary)
    name, ref, where = find_anchor(anchor, curves)
    _points(ref["psnr"], f"anchor {name!r}")  # the anchor itself must be usable
    results = []
    for setting, c in curves.items():
        if setting == name:
            continue
        row = {"name": setting, "points": sum(q is not None for _, q in c["psnr"])}
        row |= {"bd_rate_pct": None, "bd_psnr_db": None, "bd_rate_msssim_pct": None}
        try:
            row["bd_rate_pct"] = round(bd_rate(ref["psnr"], c["psnr"], (name, setting)), 3)
            row["bd_psnr_db"] = round(bd_quality(ref["psnr"], c["psnr"], (name, setting)), 4)
        except KancoinError as e:
            row["note"] = str(e)
        try:
            if ref["ms-ssim"]:
                v = bd_rate(ref["ms-ssim"], c["ms-ssim"], (name, setting))
                row["bd_rate_msssim_pct"] = round(v, 3)
        except KancoinError:
            pass
        results.append(row)
    if not results:
        raise KancoinError(f"--anchor {name!r}: no other setting in the folder to compare")
    if all(r.get("note") for r in results):  # nothing to show: say why, in one line
        raise KancoinError(results[0]["note"])
    return {
        "anchor": name, "anchor_from": where, "rate": "bpp",
        "quality": "psnr-rgb (mean of per-image PSNR); ms-ssim-db for bd_rate_msssim_pct",
        "method": "Bjontegaard (VCEG-M33): cubic fits, log-rate, overlapping interval",
        "results": results,
    }  # fmt: skip


COLUMNS = ("name", "points", "bd_rate_pct", "bd_psnr_db", "bd_rate_msssim_pct", "note")


def format_bdrate(doc: dict) -> str:
    """The BD table as text (Markdown)."""
    head = ["setting", "points", "BD-rate (PSNR)", "BD-PSNR", "BD-rate (MS-SSIM)", "note"]

    def cell(k, v):
        if v is None:
            return "–"
        if k.endswith("_pct"):
            return f"{v:+.2f} %"
        if k == "bd_psnr_db":
            return f"{v:+.3f} dB"
        return str(v)

    lines = [
        f"BD-rate against {doc['anchor']} ({doc['anchor_from']}); negative: less rate for the "
        "same quality",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
    ]  # fmt: skip
    for r in doc["results"]:
        lines.append("| " + " | ".join(cell(k, r.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_bdrate(out_dir: str | Path, summary: list[dict], anchor: str) -> dict:
    """bdrate.json / .csv / .md in ``out_dir``: every setting against ``anchor``."""
    out = Path(out_dir)
    doc = bd_table(summary, anchor)
    write_atomic(out / "bdrate.json", (json.dumps(doc, indent=1) + "\n").encode(), force=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["anchor", *COLUMNS])
    for r in doc["results"]:
        w.writerow([doc["anchor"], *("" if r.get(k) is None else r.get(k) for k in COLUMNS)])
    write_atomic(out / "bdrate.csv", buf.getvalue().encode(), force=True)
    write_atomic(out / "bdrate.md", format_bdrate(doc).encode(), force=True)
    return doc
