"""Hostile files: a decode whose cost is known from the header and bounded before any work, a
strict container, and a fuzz run of our own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import plan
from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.format import limits
from kancoin.format.container import FileHeader, _header_stream, read_header
from kancoin.format.entropy import EntropyModel
from kancoin.format.quant import QuantParams
from kancoin.nets.kan import KanSpec
from kancoin.nets.siren import SirenSpec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SHARED = ROOT.parent / "shared" / "reliability"


def _crafted(spec, height: int, width: int, coding: int, payload: bytes = b"") -> bytes:
    """A file with a valid header (every field in range) and CRC: what an attacker writes, no
    encoder needed. Fixed coding: ``payload`` zero bits' worth of weights (exact size); range
    coding: ``payload`` as the stream."""
    import bitstring

    n = len(spec.tensor_shapes())
    qps = tuple(QuantParams(-1.0, 0.01, 8) for _ in range(n))
    ems = tuple(EntropyModel(0, 128.0, 30.0) for _ in range(n)) if coding == 1 else ()
    stream = _header_stream(FileHeader(height, width, 8, spec, qps, coding, ems))
    if coding == 0:
        stream.append(bitstring.Bits(8 * spec.n_params))  # every weight 0, 8 bits each
    stream.append(bitstring.Bits((-stream.len) % 8))
    body = stream.tobytes() + (payload if coding == 1 else b"")
    return body + zlib.crc32(body).to_bytes(4, "big")


def _refused_fast(data: bytes, pattern: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(KancoinError, match=pattern) as e:
        decode_bytes(data)
    assert "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 1.0


def test_a_huge_image_is_refused_before_any_work() -> None:
    data = _crafted(KanSpec((2, 4, 3), grid_size=4), 16384, 16384, 1, b"\x12" * 8)
    _refused_fast(data, "16384x16384 image .* the limit is 67108864 pixels")


def test_a_huge_network_from_a_tiny_payload_is_refused() -> None:
    """The range decoder yields zeros past the data: a header alone must not make it decode
    billions of symbols (a native allocation failure kills the process)."""
    huge = KanSpec((2, 4095, 4095, 3), grid_size=4095)
    _refused_fast(_crafted(huge, 64, 64, 1, b"\x12" * 8), "weights; the limit is 16777216")
    siren = SirenSpec((2, *(2000,) * 8, 3))  # 28 M weights, nothing to decode them from
    _refused_fast(_crafted(siren, 64, 64, 1, b"\x12" * 8), "the limit is 16777216")
    medium = KanSpec((2, 64, 64, 3), grid_size=64)  # 300 k weights from 8 bytes
    _refused_fast(_crafted(medium, 64, 64, 1, b"\x12" * 8), "payload can hold at most")


def test_decode_work_is_bounded() -> None:
    spec = SirenSpec((2, 1000, 1000, 1000, 3))  # 2 M weights, 2 M multiply-adds per pixel
    cost = limits.decode_cost(spec, 8192, 8192)
    assert cost.work == pytest.approx(sum(i * o for i, o in spec.layer_dims()) * 8192**2)
    data = _crafted(spec, 8192, 8192, 0)  # fixed coding: the size is right
    assert cost.work > limits.MAX_DECODE_WORK
    _refused_fast(data, "multiply-adds; the limit is")


def test_chunks_shrink_to_bound_memory() -> None:
    """A dense basis (rbf) needs I × centres floats per pixel and layer: chunks shrink so that
    one chunk's temporaries stay under the cap, and a network whose single pixel is over it is
    refused."""
    wide = KanSpec((2, 64, 64, 3), grid_size=600, basis="rbf")
    cost = limits.decode_cost(wide, 512, 512)
    assert cost.chunk * cost.bytes_per_pixel <= limits.CHUNK_MEMORY < 2 * limits.MAX_CHUNK * (
        cost.bytes_per_pixel
    )
    assert cost.chunk < limits.MAX_CHUNK
    default = limits.decode_cost(KanSpec((2, 20, 20, 20, 3), grid_size=11), 512, 768)
    assert default.chunk == limits.MAX_CHUNK


# tiny_latent_arm.kc: grids coded by the latents' network, whose check reuses the
# decoder's Laplaces instead of running the network again
@pytest.mark.parametrize("name", ["tiny.kc", "tiny_latent_arm.kc"])
def test_range_coded_stream_with_trailing_bytes_is_refused(name: str) -> None:
    data = (GOLDEN / name).read_bytes()
    body = data[:-4] + b"\x01\x02\x03"
    with pytest.raises(KancoinError, match="3 bytes after the range-coded stream"):
        decode_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    header, _ = read_header(data)
    assert header.coding == 1


def test_the_encoder_never_writes_what_the_decoder_refuses() -> None:
    siren = plan((512, 512, 3), EncodeOptions(bpp=2000.0, arch="siren", coding="fixed"))
    limits.check(siren, 512, 512, 0, None)  # the widest SIREN the decoder accepts, not wider
    wider = SirenSpec((2, *(siren.hidden[0] + 64,) * 9, 3))
    with pytest.raises(KancoinError, match="limit"):
        limits.check(wider, 512, 512, 0, None)
    with pytest.raises(KancoinError, match="over the decoder's limits.*lower --bpp"):
        plan((8192, 8192, 3), EncodeOptions(arch="kan", bpp=0.3))


@pytest.mark.parametrize("name", ["image_16384x16384.kc", "kan_huge_tensor_abort.kc",
                                  "range_trailing_junk.kc", "siren_33M_weights.kc"])  # fmt: skip
def test_the_shared_hostile_files_are_refused_in_a_real_process(name: str) -> None:
    """One line, exit 1, within a second and 200 MB: refused from the header, before torch
    loads. (The files reproduce reports against kancoin 0.4.2; skipped where absent.)"""
    path = SHARED / name
    if not path.exists() or not Path("/proc/self/status").exists():
        pytest.skip("no ../shared/reliability (or no /proc to measure memory)")
    code = (
        "import sys, time\n"
        "t0 = time.perf_counter()\n"
        "from kancoin.cli import app\n"
        "try:\n"
        "    app(['decode', sys.argv[1], sys.argv[2]])\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        # VmHWM: this process's peak (ru_maxrss would carry the forking parent's over exec)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(rc, time.perf_counter() - t0, int(hwm) // 1024)\n"
    )
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"kancoin-limits-{os.getpid()}.png"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path), str(out)], capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    rc, seconds, mib = proc.stdout.split()
    assert rc == "1" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert float(seconds) < 1.5 and int(mib) < 200, (seconds, mib)
    assert not out.exists()


def _fuzz(mutants: int, seed: int) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz_decode.py"), "--mutants", str(mutants),
         "--seed", str(seed), "--json"], capture_output=True, text=True, timeout=3000,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    assert proc.returncode == 0, res["failures"]
    return res


def test_fuzz_two_hundred_mutants(fresh_process) -> None:
    """Seeded mutants of the golden files (header fields at their limits, flips, payload
    bytes, cuts, appended junk; CRC recomputed): each decodes to the header's shape or is
    refused in one line, none over 5 s, the process under 1 GiB. scripts/fuzz_decode.py runs
    in the suite's fresh process (conftest's ``fresh_process``, after its decode checks)."""
    proc = fresh_process[0]
    lines = proc.stdout.splitlines()
    res = json.loads(lines[-1]) if lines else {}
    assert "outcomes" in res, proc.stderr[-2000:]
    assert proc.returncode == 0, res["failures"]
    assert sum(res["outcomes"].values()) == 200 and res["n_failures"] == 0
    assert res["outcomes"].get("refused", 0) > 80 and res["outcomes"].get("ok", 0) > 0
    assert res["worst_seconds"] < 5.0 and res["peak_rss_mib"] < 1024


@pytest.mark.slow
def test_fuzz_ten_thousand_mutants() -> None:
    res = _fuzz(10_000, seed=0)
    assert res["n_failures"] == 0 and res["peak_rss_mib"] < 1024


def test_rate_control_stays_within_the_decoders_limits() -> None:
    """Rate control never picks a network the decoder would refuse: at 4096x4096 and 0.3 bpp
    the layers stay narrower than the budget alone would make them, and the work is within the
    limit; at 768x512 (Kodak) nothing changes."""
    from kancoin.codec.ratecontrol import choose

    big = plan((4096, 4096, 3), EncodeOptions(arch="kan"))
    cost = limits.check(big, 4096, 4096, 0, None)
    assert cost.work <= limits.MAX_DECODE_WORK and cost.weights <= limits.MAX_WEIGHTS
    unlimited = choose("kan", 4096, 4096, 3, 0.3, 9, coding=1, bpw=6.0)
    assert limits.decode_cost(unlimited, 4096, 4096).work > limits.MAX_DECODE_WORK
    assert big.hidden[0] < unlimited.hidden[0] and np.isfinite(cost.peak_bytes)
    kodak = plan((512, 768, 3), EncodeOptions(arch="kan"))
    assert kodak == choose("kan", 512, 768, 3, 0.3, 9, coding=1, bpw=6.0)
