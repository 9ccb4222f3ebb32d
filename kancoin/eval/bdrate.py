"""Bjøntegaard deltas: how much less rate a curve needs than an anchor for the same quality
(BD-rate, %), and how much more quality it gives at the same rate (BD-PSNR, dB).

Each curve is interpolated with PCHIP (piecewise cubic Hermite, Fritsch–Carlson slopes with
Moler's one-sided end slopes), log10-rate as a function of quality for the BD-rate and quality
as a function of log10-rate for the BD-PSNR, and the two interpolants are integrated exactly
over the interval both curves cover. This is the interpolation of the JCT-VC / JVET common test
conditions' spreadsheet and of the ``bjontegaard`` package's ``method="pchip"`` (which calls
scipy's ``PchipInterpolator``); it is written here in numpy. Unlike VCEG-M33's cubic
least-squares fit it passes through every point, never overshoots between points, and works
from 2 points up. A curve's quality must rise with its rate.

Curves come from a ``kancoin eval`` results folder, a summary file in CompressAI's schema
(``{"name", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}}``: ours, or CompressAI's published
``results/image/kodak/*.json``), or the published curves shipped with the package
(``kancoin.eval.references.rd_points``). ``bd_table`` compares every curve of a result set with
an anchor; ``write_bdrate`` writes the table into a results folder.
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

MIN_POINTS = 2
# below this share of the two curves' joint range, the delta covers too little of them to
# stand for the whole curve (the bjontegaard package warns at the same share)
MIN_OVERLAP = 0.75
Curve = list[tuple[float, float]]  # (rate, quality), e.g. (bpp, PSNR)
Curves = dict[str, dict[str, Curve]]  # {setting: {"psnr": Curve, "ms-ssim": Curve (in dB)}}
METRICS = ("psnr", "ms-ssim")


# --- PCHIP -----------------------------------------------------------------------------------


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """The slope at an end point: the one-sided three-point estimate, kept to the curve's shape
    (0 where it points against the first segment, 3·m0 at most where the data turns)."""
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3.0 * abs(m0):
        return 3.0 * m0
    return d


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The derivatives PCHIP gives the points (x strictly increasing): the weighted harmonic
    mean of the neighbouring secants inside, 0 at a local extremum or a flat segment, and the
    shape-preserving one-sided estimate at the ends (scipy's ``PchipInterpolator``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    w1, w2 = 2.0 * h[1:] + h[:-1], h[1:] + 2.0 * h[:-1]
    for k in range(1, len(x) - 1):
        a, b = m[k - 1], m[k]
        if a == 0.0 or b == 0.0 or np.sign(a) != np.sign(b):
            continue
        d[k] = (w1[k - 1] + w2[k - 1]) / (w1[k - 1] / a + w2[k - 1] / b)
    d[0] = _end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """The integral over [lo, hi] of the PCHIP interpolant through (x, y), x strictly
    increasing and x[0] <= lo <= hi <= x[-1]: each cubic piece integrated exactly."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not x[0] <= lo <= hi <= x[-1]:
        raise ValueError(f"[{lo}, {hi}] is not inside [{x[0]}, {x[-1]}]")
    d = pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if a >= b:
            continue
        h = x[k + 1] - x[k]
        # the piece in t = (s - x_k) / h: y0 + c1 t + c2 t^2 + c3 t^3
        m = (y[k + 1] - y[k]) / h
        c1 = d[k] * h
        c2 = (3.0 * m - 2.0 * d[k] - d[k + 1]) * h
        c3 = (d[k] + d[k + 1] - 2.0 * m) * h

        def primitive(t: float, y0: float = y[k], c1=c1, c2=c2, c3=c3) -> float:
            return t * (y0 + t * (c1 / 2.0 + t * (c2 / 3.0 + t * c3 / 4.0)))

        total += h * (primitive((b - x[k]) / h) - primitive((a - x[k]) / h))
    return float(total)


# --- BD-rate and BD-PSNR ---------------------------------------------------------------------


def _points(curve: Curve, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(log10 rate, quality) of a curve, ordered by rate; a one-line error where the curve
    cannot give a delta (too few points, a rate that is not positive, quality that does not
    rise with the rate)."""
    pts = sorted(
        (float(r), float(q)) for r, q in curve
        if r is not None and q is not None and math.isfinite(r) and math.isfinite(q)
    )  # fmt: skip
    if any(r <= 0 for r, _ in pts):
        raise KancoinError(f"{name}: BD-rate needs positive rates")
    if len(pts) < MIN_POINTS:
        raise KancoinError(f"{name}: a BD-rate needs at least {MIN_POINTS} rate points, has "
                           f"{len(pts)}")  # fmt: skip
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if not (r1 > r0 and q1 > q0):
            raise KancoinError(
                f"{name}: quality does not rise with rate ({q0:.4g} at {r0:.4g}, {q1:.4g} at "
                f"{r1:.4g}): a BD-rate needs a monotone curve"
            )
    return np.log10([r for r, _ in pts]), np.array([q for _, q in pts])


def _overlap(a: np.ndarray, b: np.ndarray, what: str, names: tuple[str, str]) -> tuple:
    """(lo, hi, share): the interval both cover and its share of the interval either covers."""
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if not lo < hi:
        raise KancoinError(
            f"{names[1]} vs {names[0]}: their {what} ranges do not overlap "
            f"({b.min():.4g}–{b.max():.4g} vs {a.min():.4g}–{a.max():.4g})"
        )
    return lo, hi, (hi - lo) / (max(a.max(), b.max()) - min(a.min(), b.min()))


def _mean(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    return pchip_integral(x, y, lo, hi) / (hi - lo)


def bd_rate(anchor: Curve, test: Curve, names: tuple[str, str] = ("anchor", "test")) -> float:
    """BD-rate of ``test`` against ``anchor`` in percent (negative: ``test`` needs less rate for
    the same quality), over the quality interval both cover."""
    la, qa = _points(anchor, names[0])
    lt, qt = _points(test, names[1])
    lo, hi, _ = _overlap(qa, qt, "quality", names)
    diff = _mean(qt, lt, lo, hi) - _mean(qa, la, lo, hi)
    return (10.0**diff - 1.0) * 100.0


def bd_quality(anchor: Curve, test: Curve, names: tuple[str, str] = ("anchor", "test")) -> float:
    """BD-PSNR (or the delta of any quality in dB) of ``test`` against ``anchor``: the mean
    quality gain at the same rate, over the log-rate interval both cover."""
    la, qa = _points(anchor, names[0])
    lt, qt = _points(test, names[1])
    lo, hi, _ = _overlap(la, lt, "rate", names)
    return _mean(lt, qt, lo, hi) - _mean(la, qa, lo, hi)


bd_psnr = bd_quality


def overlap(anchor: Curve, test: Curve) -> float:
    """The share of the two curves' joint quality range that both cover (what a BD-rate
    averages over); 0 where they do not overlap."""
    try:
        return _overlap(_points(anchor, "")[1], _points(test, "")[1], "", ("", ""))[2]
    except KancoinError:
        return 0.0


# --- result sets -----------------------------------------------------------------------------


def _db(values: list) -> list:
    """MS-SSIM values in dB, -10·log10(1 - v), as CompressAI's plot tool shows them."""
    from kancoin.metrics import ms_ssim_db

    out = []
    for v in values:
        ok = isinstance(v, int | float) and 0 <= v < 1
        out.append(ms_ssim_db(float(v)) if ok else None)
    return out


def curves_of(summary: list[dict]) -> Curves:
    """{setting: {"psnr": [(bpp, psnr-rgb)], "ms-ssim": [(bpp, MS-SSIM in dB)]}} of summary
    entries in CompressAI's schema (``ms-ssim-rgb`` raw, turned into dB here)."""
    out: Curves = {}
    for e in summary:
        res = e["results"]
        bpp = list(res.get("bpp", []))
        psnr = res.get("psnr-rgb", res.get("psnr", []))
        ms = _db(res.get("ms-ssim-rgb", res.get("ms-ssim", [])))
        out[str(e["name"])] = {
            "psnr": list(zip(bpp, psnr)),
            "ms-ssim": list(zip(bpp, ms)) if len(ms) == len(bpp) else [],
        }
    return out


def _entries(data, stem: str) -> list[dict]:
    """Summary entries of a JSON document: a list of entries, one entry, or a bare results
    dict (CompressAI's plot tool reads the last two)."""
    if isinstance(data, list):
        entries = data
    elif isinstance(data, dict) and isinstance(data.get("results"), dict):
        entries = [data]
    elif isinstance(data, dict) and "bpp" in data:
        entries = [{"name": stem, "results": data}]
    else:
        entries = []
    good = [
        {**e, "name": e.get("name", stem)} for e in entries
        if isinstance(e, dict) and isinstance(e.get("results"), dict) and "bpp" in e["results"]
    ]  # fmt: skip
    if not good or len(good) != len(entries):
        raise KancoinError(
            f"{stem}: not a summary of `kancoin eval` or CompressAI (an entry "
            '{"name", "results": {"bpp": [...], "psnr-rgb": [...]}}, or a list of them)'
        )
    return good


def load_curves(source: str | Path) -> Curves:
    """The curves of a result set: a results folder of `kancoin eval` (from its rows, so a
    folder whose report is not written yet counts every row), or a JSON summary (ours:
    ``summary.json`` / ``summary/<setting>.json``; CompressAI's results files)."""
    p = Path(source)
    if p.is_dir():
        if (p / "rows").is_dir():
            from kancoin.eval.reports import load_rows, summarize

            summary = summarize(load_rows(p))
            if not summary:
                raise KancoinError(f"{p}: no rows in {p / 'rows'}")
            return curves_of(summary)
        if (p / "summary.json").is_file():
            return load_curves(p / "summary.json")
        raise KancoinError(f"{p}: not a results folder of `kancoin eval` (no rows/, no "
                           "summary.json)")  # fmt: skip
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise KancoinError(f"{p}: no such file or folder") from None
    except OSError as e:
        raise KancoinError(f"{p}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise KancoinError(f"{p}: not JSON ({e})") from None
    return curves_of(_entries(data, p.name.split(".")[0]))


def _published() -> Curves:
    from kancoin.eval.references import rd_points

    return {
        k: {"psnr": [(p["bpp"], p["psnr"]) for p in pts], "ms-ssim": []}
        for k, pts in rd_points().items()
    }  # fmt: skip


def find_anchor(name: str, curves: Curves) -> tuple[str, dict, str]:
    """(name, curves, where) of ``--anchor NAME``: a setting of the folder, else a published
    curve, matched exactly, then case-insensitively, then as the only one starting so."""
    every = [(k, v, "this folder") for k, v in curves.items()]
    every += [(k, v, "published") for k, v in _published().items() if k not in curves]
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


def resolve_anchor(
    anchor: str, curves: Curves, setting: str | None = None
) -> tuple[str, dict, str]:
    """(name, curves, where) of an anchor: a curve of ``curves`` named exactly so, else a path
    to another result set (a folder or a JSON summary; ``setting`` picks one of its curves
    where it has several), else ``find_anchor`` (``curves``, then the published ones)."""
    p = Path(anchor)
    own = anchor in curves and setting is None  # a curve's name before a file of that name
    if not own and anchor.strip() and (p.is_dir() or p.is_file() or p.suffix.lower() == ".json"):
        theirs = load_curves(p)
        if setting is None:
            if len(theirs) != 1:
                names = ", ".join(repr(k) for k in theirs)
                raise KancoinError(
                    f"--anchor {anchor}: holds {len(theirs)} curves ({names}); pick one with "
                    "--anchor-setting NAME"
                )
            setting = next(iter(theirs))
        if setting not in theirs:
            names = ", ".join(repr(k) for k in theirs)
            raise KancoinError(f"--anchor-setting {setting!r}: not in {anchor} (have {names})")
        return setting, theirs[setting], str(anchor)
    if setting is not None:
        raise KancoinError("--anchor-setting picks a curve of an --anchor that is a path")
    return find_anchor(anchor, curves)


def check_anchor(anchor: str, names: list[str], setting: str | None = None) -> str:
    """Check an anchor before any work: it must name one of ``names`` (the settings a run will
    have), a published curve, or a result set whose curve allows a delta. Returns its name."""
    placeholder: Curves = {n: {"psnr": [], "ms-ssim": []} for n in names}
    name, ref, where = resolve_anchor(anchor, placeholder, setting)
    if where != "this folder":
        _points(ref["psnr"], f"anchor {name!r}")
    return name


def _delta(fn, ref: Curve, c: Curve, names: tuple[str, str], nd: int):
    try:
        return round(fn(ref, c, names), nd), None
    except KancoinError as e:
        return None, str(e)


def compare(curves: Curves, name: str, ref: dict, where: str) -> dict:
    """BD-rate and BD-PSNR (and, where both curves have MS-SSIM, the BD-rate on MS-SSIM in dB
    and the BD-MS-SSIM in dB) of every curve of ``curves`` against ``ref``, the anchor's
    curves; a curve that has no delta gets ``note`` (why). The anchor must allow a delta: a
    one-line error otherwise."""
    label = name if where in ("this folder", "published") else f"{name} ({where})"
    _points(ref["psnr"], f"anchor {label!r}")  # the anchor itself must be usable
    results = []
    for setting, c in curves.items():
        if setting == name and where == "this folder":
            continue
        names = (label, setting)
        row: dict = {"name": setting, "points": sum(q is not None for _, q in c["psnr"])}
        row["bd_rate_pct"], note = _delta(bd_rate, ref["psnr"], c["psnr"], names, 3)
        row["bd_psnr_db"], note2 = _delta(bd_quality, ref["psnr"], c["psnr"], names, 4)
        note = note or note2
        row["bd_rate_msssim_pct"] = row["bd_msssim_db"] = None
        if ref["ms-ssim"] and c["ms-ssim"]:
            row["bd_rate_msssim_pct"], _ = _delta(bd_rate, ref["ms-ssim"], c["ms-ssim"], names, 3)
            row["bd_msssim_db"], _ = _delta(bd_quality, ref["ms-ssim"], c["ms-ssim"], names, 4)
        row["overlap_pct"] = round(100 * overlap(ref["psnr"], c["psnr"]), 1)
        if note is None and row["overlap_pct"] < 100 * MIN_OVERLAP:
            note = (f"the curves share {row['overlap_pct']:g} % of their PSNR range: the "
                    "delta stands for that part only")  # fmt: skip
        if note is not None:
            row["note"] = note
        results.append(row)
    if not results:
        raise KancoinError(f"--anchor {name!r}: no other curve to compare")
    if all(r["bd_rate_pct"] is None for r in results):  # nothing to show: say why, in one line
        raise KancoinError(results[0]["note"])
    return {
        "anchor": name, "anchor_from": where,
        "anchor_points": sum(q is not None for _, q in ref["psnr"]), "rate": "bpp",
        "quality": "psnr-rgb (mean of per-image PSNR); MS-SSIM in dB, -10·log10(1 - "
        "ms-ssim-rgb), for the MS-SSIM columns",
        "method": "Bjontegaard deltas, PCHIP interpolation (JCT-VC common test conditions), "
        "log10 rate, over the interval both curves cover",
        "results": results,
    }  # fmt: skip


def bd_table(summary: list[dict], anchor: str, setting: str | None = None) -> dict:
    """Every setting of ``summary`` (a results folder's) against ``anchor``: a setting of the
    folder, a published curve, or a path to another result set (see ``resolve_anchor``)."""
    curves = curves_of(summary)
    name, ref, where = resolve_anchor(anchor, curves, setting)
    return compare(curves, name, ref, where)


COLUMNS = (
    "name", "points", "bd_rate_pct", "bd_psnr_db", "bd_rate_msssim_pct", "bd_msssim_db",
    "overlap_pct", "note",
)  # fmt: skip
HEAD = (
    "setting", "points", "BD-rate (PSNR)", "BD-PSNR", "BD-rate (MS-SSIM)", "BD-MS-SSIM",
    "overlap", "note",
)  # fmt: skip


def _cell(k: str, v) -> str:
    if v is None:
        return "–"
    if k == "overlap_pct":
        return f"{v:g} %"
    if k.endswith("_pct"):
        return f"{v:+.2f} %"
    if k.endswith("_db"):
        return f"{v:+.3f} dB"
    return str(v)


def format_bdrate(doc: dict) -> str:
    """The BD table as text (Markdown)."""
    where = doc["anchor_from"]
    lines = [
        f"BD-rate against {doc['anchor']} ({where}, {doc['anchor_points']} points; PCHIP); "
        "negative BD-rate: less rate for the same quality",
        "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD),
    ]  # fmt: skip
    for r in doc["results"]:
        lines.append("| " + " | ".join(_cell(k, r.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def bdrate_csv(doc: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["anchor", *COLUMNS])
    for r in doc["results"]:
        w.writerow([doc["anchor"], *("" if r.get(k) is None else r.get(k) for k in COLUMNS)])
    return buf.getvalue()


def write_bdrate(
    out_dir: str | Path, summary: list[dict], anchor: str, setting: str | None = None
) -> dict:
    """bdrate.json / .csv / .md in ``out_dir``: every setting against ``anchor``."""
    out = Path(out_dir)
    doc = bd_table(summary, anchor, setting)
    write_atomic(out / "bdrate.json", (json.dumps(doc, indent=1) + "\n").encode(), force=True)
    write_atomic(out / "bdrate.csv", bdrate_csv(doc).encode(), force=True)
    write_atomic(out / "bdrate.md", format_bdrate(doc).encode(), force=True)
    return doc
