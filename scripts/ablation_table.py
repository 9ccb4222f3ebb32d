"""Markdown table of mean PSNR / bpp per setting from a kancoin eval results folder.

    python scripts/ablation_table.py results/ablation
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/ablation")
    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    by = defaultdict(list)
    for r in rows:
        by[r["setting"]].append(r)
    print("| setting | images | mean PSNR (dB) | mean bpp | params | bits/weight | encode s |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in sorted(by.items(), key=lambda kv: kv[1][0].get("encode_s") or 0):
        n = len(rs)

        def mean(k: str, rs=rs, n=n) -> float:
            return sum(r[k] for r in rs) / n

        bpw = [r.get("payload_bits_per_weight") for r in rs]
        bpw_s = f"{sum(bpw) / n:.2f}" if all(b is not None for b in bpw) else "—"
        params = rs[0].get("params") or "—"
        print(
            f"| `{name}` | {', '.join(r['image'] for r in rs)} | {mean('psnr'):.2f} | "
            f"{mean('bpp'):.4f} | {params} | {bpw_s} | {mean('encode_s'):.0f} |"
        )


if __name__ == "__main__":
    main()
