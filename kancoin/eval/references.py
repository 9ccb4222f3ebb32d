"""Published reference numbers on Kodak, shipped as package data (``kancoin/data/reference``).

- ``per_image_03()``: per-image PSNR at about 0.3 bpp: COIN (10x28 SIREN, fp16), and the SIREN
  and 9-bit KAN bars of the KAN-COIN whitepaper (Fig. 1).
- ``rd_points()``: dataset-level rate-distortion points (mean of per-image PSNR) per codec.
Sources are in the data folder's README.md.
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from importlib import resources

PER_IMAGE_FILE = "kodak_0.3bpp.csv"
RD_FILE = "kodak_rd.csv"

# column in kodak_0.3bpp.csv -> label
PER_IMAGE_LABELS = {
    "coin_siren_psnr": "COIN (SIREN 10x28 fp16)",
    "siren_psnr_kan_paper": "SIREN (KAN-COIN paper)",
    "kan_coin_paper_psnr": "KAN-COIN paper (9-bit)",
}
COIN = "coin_siren_psnr"
KAN_COIN = "kan_coin_paper_psnr"


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("kancoin").joinpath("data", "reference", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@lru_cache(maxsize=1)
def per_image_03() -> dict[str, dict[str, float]]:
    """{image: {column: PSNR}} at about 0.3 bpp (columns: see PER_IMAGE_LABELS)."""
    out: dict[str, dict[str, float]] = {}
    for row in _read(PER_IMAGE_FILE):
        out[row["image"]] = {k: float(v) for k, v in row.items() if k != "image" and v}
    return out


def published_psnr(image: str, column: str) -> float | None:
    return per_image_03().get(image, {}).get(column)


@lru_cache(maxsize=1)
def rd_points() -> dict[str, list[dict]]:
    """{codec: [{bpp, psnr, how, source}, ...]} sorted by bpp."""
    out: dict[str, list[dict]] = {}
    for row in _read(RD_FILE):
        out.setdefault(row["codec"], []).append(
            {
                "bpp": float(row["bpp"]),
                "psnr": float(row["psnr"]),
                "how": row["how"],
                "source": row["source"],
            }
        )
    for pts in out.values():
        pts.sort(key=lambda p: p["bpp"])
    return out
