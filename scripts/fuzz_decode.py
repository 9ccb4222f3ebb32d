"""Fuzz the decoder: seeded mutants of real .kc files, each decoded under a time cap, all in this
process under a memory cap; prints a summary (or one JSON object with --json).

    python scripts/fuzz_decode.py [--mutants 10000] [--seed 0] [--json] [--memory-mib 1024]

Seeds: the golden files (formats 1-6, fixed and range-coded, KAN and latent). Mutants, with
the CRC recomputed so they reach the parser's later checks:
- ``field``: one header field set to a value at or past its limits (lo, hi, 0, the largest its
  bits hold), found from the format's own field tables;
- ``flip``: 1-4 random bits flipped in the header;
- ``payload``: random bytes overwritten in the payload;
- ``cut`` / ``append``: the file cut short, or junk appended;
- ``raw``: a flip without fixing the CRC.
Each outcome is ``ok`` (decoded: its shape must match the header) or ``refused`` (one
KancoinError line). Anything else — another exception, a decode over the time cap, the process
dying, the peak memory over the cap — is a failure, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = sorted((ROOT / "tests" / "golden").glob("tiny*.kc"))


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _Timeout


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


def _field_offsets(data: bytes):
    """(bit offset, Field) of every header field of a file, from the format's tables."""
    from kancoin.format.container import _sections, read_header

    header, _ = read_header(data)
    offsets, pos = [], 0
    for f in _sections(header.spec, header.coding, header.version):
        offsets.append((pos, f))
        pos += f.nbits
    return offsets


def _set_bits(data: bytes, offset: int, nbits: int, value: int) -> bytes:
    bits = int.from_bytes(data, "big")
    total = 8 * len(data)
    shift = total - offset - nbits
    mask = ((1 << nbits) - 1) << shift
    bits = (bits & ~mask) | ((value & ((1 << nbits) - 1)) << shift)
    return bits.to_bytes(len(data), "big")


def _field_mutant(rng: random.Random, data: bytes) -> bytes:
    import struct

    offset, f = rng.choice(_field_offsets(data))
    if f.fmt.startswith("bytes"):
        return _with_crc(_set_bits(data[:-4], offset, f.nbits, rng.getrandbits(f.nbits)))
    if f.fmt.startswith("float"):
        cands = [f.lo, f.hi, 0.0, -f.hi, f.hi * 2, float("inf"), float("nan"), 1e-30]
        v = float(rng.choice([c for c in cands if c is not None]))
        fmt = ">f" if f.nbits == 32 else ">e"
        try:
            raw = int.from_bytes(struct.pack(fmt, v), "big")
        except (OverflowError, struct.error):  # beyond the format: its infinity
            raw = int.from_bytes(struct.pack(fmt, float("inf")), "big")
    else:
        top = (1 << f.nbits) - 1
        cands = [0, top, rng.getrandbits(f.nbits)]
        if f.lo is not None:
            lo, hi = int(f.lo), int(f.hi)
            cands += [lo, max(0, lo - 1), min(top, hi), min(top, hi + 1)]
        raw = rng.choice(cands)
    return _with_crc(_set_bits(data[:-4], offset, f.nbits, raw))


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["field", "field", "field", "flip", "payload", "cut", "append", "raw"])
    header_bytes = min(len(data) - 4, 16 + rng.randrange(64))
    if kind == "field":
        return kind, _field_mutant(rng, data)
    if kind in ("flip", "raw"):
        b = bytearray(data[:-4])
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(max(1, header_bytes))
            b[i] ^= 1 << rng.randrange(8)
        return kind, _with_crc(bytes(b)) if kind == "flip" else bytes(b) + data[-4:]
    if kind == "payload":
        b = bytearray(data[:-4])
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return kind, _with_crc(bytes(b))
    if kind == "cut":
        return kind, _with_crc(data[: rng.randrange(4, max(5, len(data) - 4))])
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return kind, _with_crc(data[:-4] + junk)


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry over the peak of a
    parent that forked it)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, seed: int, time_cap: float) -> dict:
    from kancoin.codec.decode import decode_bytes
    from kancoin.errors import KancoinError

    seeds = [p.read_bytes() for p in SEEDS]
    for s in seeds:  # warm up (kernels compiled), and the seeds must decode
        decode_bytes(s)
    rng = random.Random(f"kancoin-fuzz-{seed}")
    outcomes: Counter = Counter()
    by_kind: Counter = Counter()
    failures: list[dict] = []
    worst = 0.0
    messages: Counter = Counter()
    signal.signal(signal.SIGALRM, _on_alarm)
    for i in range(n):
        kind, data = mutate(rng, rng.choice(seeds))
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, time_cap)
        try:
            d = decode_bytes(data)
            h = d.header
            if d.pixels.shape != (h.height, h.width, h.channels):
                raise AssertionError(f"shape {d.pixels.shape} vs header {h.height}x{h.width}")
            outcome = "ok"
        except KancoinError as e:
            outcome = "refused"
            if "\n" in str(e):
                failures.append({"i": i, "kind": kind, "error": "multi-line message"})
            messages[str(e).split(":")[0][:40]] += 1
        except _Timeout:
            outcome = "timeout"
            failures.append({"i": i, "kind": kind, "error": f"over {time_cap} s"})
        except Exception as e:  # noqa: BLE001 - every other exception is a finding
            outcome = "exception"
            failures.append({"i": i, "kind": kind, "error": f"{type(e).__name__}: {e}"[:200]})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        worst = max(worst, time.perf_counter() - t0)
        outcomes[outcome] += 1
        by_kind[f"{kind}:{outcome}"] += 1
    peak_mib = _peak_mib()
    return {
        "mutants": n, "seed": seed, "outcomes": dict(outcomes), "by_kind": dict(by_kind),
        "worst_seconds": round(worst, 3), "peak_rss_mib": round(peak_mib, 1),
        "failures": failures[:20], "n_failures": len(failures),
        "top_refusals": dict(messages.most_common(8)),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mutants", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-cap", type=float, default=5.0, help="seconds per decode")
    ap.add_argument("--memory-mib", type=int, default=1024, help="peak RSS allowed")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    # a hard cap far above the allowed peak: a runaway allocation fails instead of swapping
    limit = (a.memory_mib + 3072) << 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    res = run(a.mutants, a.seed, a.time_cap)
    res["memory_cap_mib"] = a.memory_mib
    ok = res["n_failures"] == 0 and res["peak_rss_mib"] <= a.memory_mib
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
