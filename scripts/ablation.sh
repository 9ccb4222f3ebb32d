#!/usr/bin/env bash
# Ablation of the rate-distortion work (docs/research/ablation.md): each step on its own against the
# kancoin 0.1 baseline, same images, same steps, through real files. Resumable (kancoin eval).
#   bash scripts/ablation.sh [OUT] [IMAGES] [ITERS]
set -euo pipefail
OUT=${1:-results/ablation}
IMAGES=${2:-kodim03,kodim23}
ITERS=${3:-3000}
common=(--images "$IMAGES" --bpp 0.3 --iters "$ITERS" --jobs 2 --device cpu --out "$OUT" --quiet)
# KAN: 0.1 baseline = fixed 9-bit, no QAT, lr 1e-3; then one change at a time; then all
kancoin eval --arch kan --coding fixed --bits 9 --qat 0 --lr 1e-3 "${common[@]}"
kancoin eval --arch kan --coding range --bits 8 --qat 0 --lr 1e-3 "${common[@]}"  # + range coding
kancoin eval --arch kan --coding fixed --bits 9 --qat 0.1 --lr 1e-3 "${common[@]}"  # + QAT
kancoin eval --arch kan --coding fixed --bits 9 --qat 0 --lr 1e-2 "${common[@]}"  # + lr
kancoin eval --arch kan --bits 8 --lr 1e-2 "${common[@]}"  # all, as measured (0.2 defaults)
kancoin eval --arch kan "${common[@]}"  # today's defaults: range, 9 bits, QAT 10 %, lr 2e-2, first-layer grid
# SIREN (COIN): 16-bit fixed (COIN's fp16 size), then range coding + QAT (defaults)
kancoin eval --arch siren --coding fixed --qat 0 "${common[@]}"
kancoin eval --arch siren "${common[@]}"
python scripts/ablation_table.py "$OUT"
