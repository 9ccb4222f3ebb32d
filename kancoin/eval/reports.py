"""Eval outputs: rows in, per-image tables, CompressAI-style summaries and comparisons out."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from kancoin.fileio import write_atomic
from kancoin.metrics import ms_ssim_db, psnr_from_mse

COMPARE_BPP = 0.3
ROW_FIELDS = (
    "image", "height", "width", "setting", "codec", "arch", "architecture", "params", "bits",
    "quality", "coding", "payload_bits_per_weight", "file_bytes", "bpp", "psnr", "ms_ssim",
    "ms_ssim_db", "mse",
    "float_psnr", "qat_psnr", "encode_s", "decode_s", "steps",
    "iters", "device", "threads", "seed", "target_bpp",
)  # fmt: skip


def finite(x: float | None, nd: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def load_row(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def is_error(row: dict) -> bool:
    """An error row: an image that could not be read or encoded (no PSNR, bpp or file)."""
    return bool(row.get("error"))


def load_rows(out_dir: str | Path, errors: bool = False) -> list[dict]:
    """The rows in ``out_dir/rows``; error rows only with ``errors``."""
    rows = []
    for p in sorted((Path(out_dir) / "rows").glob("*.json")):
        r = load_row(p)
        if r is not None and "image" in r and (errors or not is_error(r)):
            rows.append(r)
    return rows


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _mean_all(xs) -> float | None:
    """The mean, or None unless every value is there (a mean over part of the images would not
    compare with the other columns)."""
    xs = list(xs)
    return None if not xs or any(x is None for x in xs) else sum(xs) / len(xs)


def summarize(rows: list[dict]) -> list[dict]:
    """CompressAI-style entries, one per setting, lists over target rates (error rows left
    out). ``psnr-rgb``: the mean of per-image PSNR; ``ms-ssim-rgb``: the mean of per-image
    MS-SSIM, ``ms-ssim-db`` that mean in dB, as CompressAI's plot tool shows it. The two
    MS-SSIM lists are there only where every image at every rate has an MS-SSIM (none under 161
    pixels a side): CompressAI's plot tool cannot read a null, and says a missing metric is
    not available."""
    groups: dict[str, dict[float, list[dict]]] = {}
    desc: dict[str, str] = {}
    for r in (r for r in rows if not is_error(r)):
        groups.setdefault(r["setting"], {}).setdefault(r["target_bpp"], []).append(r)
        desc[r["setting"]] = r.get("description", r["setting"])
    out = []
    for name, by_rate in sorted(groups.items()):
        res: dict[str, list] = {
            k: []
            for k in (
                "target_bpp", "bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db",
                "psnr-of-mean-mse", "n_images",
                "encoding_time", "decoding_time",
            )
        }  # fmt: skip
        for tb in sorted(by_rate):
            rs = by_rate[tb]

            res["target_bpp"].append(tb)
            res["bpp"].append(finite(_mean(r["bpp"] for r in rs), 5))
            res["psnr-rgb"].append(finite(_mean(r["psnr"] for r in rs)))
            ms = _mean_all(r.get("ms_ssim") for r in rs)
            res["ms-ssim-rgb"].append(finite(ms, 6))
            res["ms-ssim-db"].append(None if ms is None else finite(ms_ssim_db(ms)))
            res["psnr-of-mean-mse"].append(finite(psnr_from_mse(_mean(r["mse"] for r in rs))))
            res["n_images"].append(len(rs))
            res["encoding_time"].append(finite(_mean(r["encode_s"] for r in rs), 4))
            res["decoding_time"].append(finite(_mean(r["decode_s"] for r in rs), 4))
        if any(v is None for v in res["ms-ssim-rgb"]):
            del res["ms-ssim-rgb"], res["ms-ssim-db"]
        out.append({"name": name, "description": desc[name], "results": res})
    return out


def compare_table(rows: list[dict], bpp: float = COMPARE_BPP) -> tuple[list[str], list[list]]:
    """Per-image PSNR at `bpp` of each setting vs published COIN and KAN-COIN (differences)."""
    from kancoin.eval.references import COIN, KAN_COIN, per_image_03

    ref = per_image_03()
    at = [r for r in rows if abs(r["target_bpp"] - bpp) < 1e-9 and not is_error(r)]
    settings = sorted({r["setting"] for r in at})
    images = sorted({r["image"] for r in at})
    val = {(r["image"], r["setting"]): r["psnr"] for r in at}
    header = ["image", "COIN", "KAN-COIN paper"]
    for s in settings:
        header += [s, f"{s} - COIN", f"{s} - KAN-COIN"]
    body = []
    for im in images:
        coin, kanp = ref.get(im, {}).get(COIN), ref.get(im, {}).get(KAN_COIN)
        line = [im, coin, kanp]
        for s in settings:
            v = val.get((im, s))
            line += [
                v,
                None if v is None or coin is None else round(v - coin, 2),
                None if v is None or kanp is None else round(v - kanp, 2),
            ]
        body.append(line)
    if body:
        means = ["mean"]
        for j in range(1, len(header)):
            means.append(finite(_mean(b[j] for b in body), 2))
        body.append(means)
    return header, body


def _csv_bytes(header: list[str], body: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for line in body:
        w.writerow(["" if x is None else x for x in line])
    return buf.getvalue().encode()


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.2f}"
    return str(x)


def markdown(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(x) for x in b) + " |" for b in body]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str | Path) -> list[dict]:
    """results.csv/json, summary.json (+ summary/<setting>.json), compare_0.3bpp.csv/md, from
    the good rows (error rows stay in rows/ only). ``summary.json`` lists every setting's entry;
    each ``summary/<setting>.json`` holds one, the form CompressAI's plot tool reads
    (``python -m compressai.utils.plot -f OUT/summary/*.json``)."""
    out = Path(out_dir)
    rows = load_rows(out)
    write_atomic(out / "results.json", (json.dumps(rows, indent=1) + "\n").encode(), force=True)
    body = [[r.get(k) for k in ROW_FIELDS] for r in rows]
    write_atomic(out / "results.csv", _csv_bytes(list(ROW_FIELDS), body), force=True)
    summary = summarize(rows)
    write_atomic(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode(), force=True)
    (out / "summary").mkdir(exist_ok=True)
    for entry in summary:
        data = (json.dumps(entry, indent=1) + "\n").encode()
        write_atomic(out / "summary" / f"{entry['name']}.json", data, force=True)
    header, cbody = compare_table(rows)
    if cbody:
        write_atomic(out / "compare_0.3bpp.csv", _csv_bytes(header, cbody), force=True)
        write_atomic(out / "compare_0.3bpp.md", markdown(header, cbody).encode(), force=True)
    return summary


def format_table(rows: list[dict]) -> str:
    """Per-image PSNR (bpp) per setting and rate, and the means (of per-image PSNR; error rows,
    shown as "error", left out)."""
    cols = list(dict.fromkeys((r["setting"], r["target_bpp"]) for r in rows))
    images = list(dict.fromkeys(r["image"] for r in rows))
    val = {(r["image"], r["setting"], r["target_bpp"]): r for r in rows}
    names = [f"{s}@{b:g}" for s, b in cols]
    width = max([18] + [len(n) + 1 for n in names])
    iw = max([8] + [len(i) for i in images])
    lines = [f"{'image':<{iw}}" + "".join(f"{n:>{width}}" for n in names)]

    def cell(r):
        if r is not None and is_error(r):
            return f"{'error':>{width}}"
        if r is None or r["psnr"] is None:
            return f"{'–':>{width}}"
        return f"{r['psnr']:.2f} dB {r['bpp']:.3f}".rjust(width)

    for im in images:
        lines.append(f"{im:<{iw}}" + "".join(cell(val.get((im, s, b))) for s, b in cols))
    means = []
    for s, b in cols:
        rs = [val[(im, s, b)] for im in images if (im, s, b) in val]
        rs = [r for r in rs if not is_error(r)]
        p, bp = _mean(r["psnr"] for r in rs), _mean(r["bpp"] for r in rs)
        means.append(f"{'–':>{width}}" if p is None else f"{p:.2f} dB {bp:.3f}".rjust(width))
    lines.append(f"{'mean':<{iw}}" + "".join(means))
    failed = sum(is_error(r) for r in rows)
    errors = f", {failed} failed (error)" if failed else ""
    lines.append(f"({len(images)} images{errors}; cells: PSNR, bpp of the whole file)")
    return "\n".join(lines)
