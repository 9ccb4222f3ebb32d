"""The suite's one fresh decoding process (conftest's ``fresh_process`` runs it; a process start
with torch and the kernels' cache costs seconds, so the checks that need a fresh process share
one):

    python tests/fresh_process.py FILE.kc OUT.png OUT.npy MUTANTS SEED

1. importing kancoin loads neither torch nor numba, and decoding FILE (``kancoin.decode``, its
   pixels saved to OUT.npy) loads no fitting, QAT, rate control, training kernel, eval or CLI
   module: one JSON line (test_layout);
2. then what ``python -m kancoin decode FILE OUT.png`` runs, in this process: its exit status in
   a second JSON line (test_layout);
3. then ``scripts/fuzz_decode.py --mutants MUTANTS --seed SEED --json`` (its main, with its
   memory cap on this process): its JSON the last line, its exit status this process's
   (test_limits).
"""

import json
import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING = (
    "kancoin.codec.fit", "kancoin.codec.qat", "kancoin.codec.ratecontrol", "kancoin.codec.encode",
    "kancoin.codec.bitalloc", "kancoin.nets.kan.fused", "kancoin.nets.kan.kernels_train",
    "kancoin.nets.kan.sizing", "kancoin.eval", "kancoin.research", "kancoin.cli",
)  # fmt: skip


def main() -> None:
    kc, png, npy, mutants, seed = sys.argv[1:6]
    import kancoin

    light = sorted(m for m in ("torch", "numba") if m in sys.modules)
    pixels = kancoin.decode(Path(kc).read_bytes())
    loaded = sorted(m for m in sys.modules if m.startswith(TRAINING))
    import numpy as np

    np.save(npy, pixels)
    print(json.dumps({"light": light, "loaded": loaded}), flush=True)

    from kancoin.cli import main as kancoin_main

    sys.argv = ["kancoin", "decode", kc, png]
    try:
        kancoin_main()
        status = 0
    except SystemExit as e:
        status = e.code
    print(json.dumps({"decode_status": status}), flush=True)

    sys.argv = ["fuzz_decode.py", "--mutants", mutants, "--seed", seed, "--json"]
    try:
        runpy.run_path(str(ROOT / "scripts" / "fuzz_decode.py"), run_name="__main__")
        status = 0
    except SystemExit as e:
        status = e.code
    # everything is written: skip the interpreter's teardown of torch (about a second)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if status is None else status if isinstance(status, int) else 1)


if __name__ == "__main__":
    main()
