#!/usr/bin/env bash
# The GPU check: one script, run once on a machine with a CUDA device (and a CUDA build of
# torch); everything it measures goes into OUT (default gpu-check/), a log and JSON lines.
#   bash scripts/gpu_check.sh [OUT] [KODAK_DIR]
# 1. ms per training step, batch 10,000: KAN (default 0.3 bpp architecture), the reference KAN,
#    SIREN 10x28, eager and torch.compile (reduce-overhead: CUDA graphs);
# 2. default encodes of kodim03 and kodim23 on CUDA (time, PSNR, bpp, peak GPU memory);
# 3. decodes of those files on the CPU (CUDA hidden), whose PSNR must equal the encoder's;
# 4. the gpu-marked tests.
set -uo pipefail
OUT=${1:-gpu-check}
KODAK=${2:-${KANCOIN_KODAK:-../shared/data/kodak}}
PY=${PYTHON:-python}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
say() { echo "$*" | tee -a "$LOG"; }

say "# $(date -u +%FT%TZ) $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
$PY -c "import torch, kancoin; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'kancoin', kancoin.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee -a "$LOG"

say "## 1. step times"
timeout 900 $PY scripts/bench_fit.py --device cuda --json --no-peak --no-decode \
  > "$OUT/bench_fit_cuda.json" 2>> "$LOG" || say "bench_fit failed (exit $?)"
for mode in reduce-overhead; do
  timeout 900 $PY - "$mode" >> "$OUT/compiled_steps.jsonl" 2>> "$LOG" <<'PYEOF' || say "compiled step ($mode) failed"
import json, sys, time
import numpy as np, torch
from kancoin.codec.fit import FitConfig, fit
from kancoin.codec.encode import plan
from kancoin.codec.options import EncodeOptions
from kancoin.nets import build
mode = sys.argv[1]
px = np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8)
for arch in ("kan", "siren"):
    spec = plan(px.shape, EncodeOptions(arch=arch))
    for compile_mode in (None, mode):
        model = build(spec)
        cfg = FitConfig(iters=300, lr=1e-3, eval_every=10**9, compile=compile_mode)
        t0 = time.perf_counter()
        fit(model, spec, px, cfg, torch.device("cuda"))
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
        print(json.dumps({"arch": arch, "compile": compile_mode, "steps": 300,
                          "seconds": round(total, 3), "ms_per_step": round(1000 * total / 300, 3),
                          "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}))
PYEOF
done

say "## 2. default encodes on CUDA, 3. decodes on the CPU"
for img in kodim03 kodim23; do
  src="$KODAK/$img.png"
  [ -f "$src" ] || src="data/$img.png"
  [ -f "$src" ] || { say "no $img.png"; continue; }
  start=$(date +%s.%N)
  timeout 900 $PY -m kancoin encode "$src" "$OUT/$img.kc" --bpp 0.3 --device cuda --json --force \
    > "$OUT/$img.encode.json" 2>> "$LOG" || { say "encode $img failed"; continue; }
  say "$img encode wall $(echo "$(date +%s.%N) - $start" | bc) s: $(cat "$OUT/$img.encode.json")"
  CUDA_VISIBLE_DEVICES="" timeout 300 $PY - "$src" "$OUT/$img.kc" "$OUT/$img.encode.json" \
    >> "$OUT/cpu_decode.jsonl" 2>> "$LOG" <<'PYEOF' || say "CPU decode of $img: MISMATCH or failure"
import json, sys
import torch
from kancoin.codec.decode import decode_bytes
from kancoin.imageio import load_image
from kancoin.metrics import psnr
assert not torch.cuda.is_available()
pixels, _ = load_image(sys.argv[1])
dec = decode_bytes(open(sys.argv[2], "rb").read())
reported = json.load(open(sys.argv[3]))["psnr"]
measured = psnr(dec.pixels, pixels)
print(json.dumps({"file": sys.argv[2], "reported": reported, "cpu_decoded": round(measured, 4),
                  "equal": abs(round(measured, 4) - reported) < 1e-9, "decode_s": dec.seconds}))
sys.exit(0 if abs(round(measured, 4) - reported) < 1e-9 else 1)
PYEOF
done
cat "$OUT/cpu_decode.jsonl" 2>/dev/null | tee -a "$LOG"

say "## 4. gpu tests"
timeout 900 $PY -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tail -5 | tee -a "$LOG"
say "# done $(date -u +%FT%TZ)"
