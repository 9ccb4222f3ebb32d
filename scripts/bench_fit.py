"""Speed and memory benchmark of the KAN codec against its baselines, in one process.

    python scripts/bench_fit.py                    # all usable cores, CPU
    python scripts/bench_fit.py --sweep-threads    # 1 and 2 threads
    python scripts/bench_fit.py --device cuda      # time the steps on the GPU
    python scripts/bench_fit.py --json             # one JSON object on stdout

Measures, after warm-up, the median over several runs of:

- ms per training step (forward + backward + fused Adam; batch of 10,000 random pixels of a
  768x512 image, MSE to random targets, taken as ``kancoin.codec.fit`` takes it: pixel indices
  through the family's ``predictor``) for
  ours       ``build(plan(...))``: the encoder's default KAN for 768x512 at 0.3 bpp (range
             coding; ``--spec fixed9``: fixed 9-bit coding's), backend auto (fused numba on CPU),
  reference  the same KAN with efficient-kan's Cox–de Boor dense basis (``backend="reference"``),
  dense      the same KAN with the torch closed-form basis (``backend="dense"``),
  siren      COIN's SIREN 10x28;
  the models are timed in turn within each run and the ratios are medians of per-run ratios;
- decode time of a 768x512 ``.kc`` file (untrained weights), through
  ``kancoin.codec.decode.decode_bytes``;
- with ``--encode-steps N``: the whole ``encode_pixels`` of kodim23 with ``--arch kan`` and
  ``--arch siren`` at N steps each;
- peak RSS of an encode (50 iterations) and of a decode, each in its own subprocess
  (``--peak encode|decode``, used internally).

The thread policy ``kancoin.codec.runtime.configure`` is applied before each model: a KAN gets
torch 1 thread + numba N threads, a SIREN torch N threads. ``--baseline-policy torch`` gives the
torch-only KAN backends (reference, dense) torch N threads instead (a fairer comparison for them).
It also checks that the fused and reference KANs agree on the same weights (outputs, gradients;
``--check-samples`` inputs).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kancoin.codec import runtime
from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import plan, serialise_bytes
from kancoin.codec.options import EncodeOptions
from kancoin.codec.ratecontrol import choose
from kancoin.format.container import read_bytes
from kancoin.format.quant import quantize_tensor
from kancoin.nets import NetSpec, build, export_arrays, family
from kancoin.nets.coords import coordinates
from kancoin.nets.kan.layers import KANLinear
from kancoin.nets.kan.network import KAN
from kancoin.nets.siren import SirenSpec

HEIGHT, WIDTH, CHANNELS = 512, 768, 3
BPP, BITS = 0.3, 9
BATCH = 10_000
SIREN_WIDTHS = (2,) + (28,) * 9 + (3,)
REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "data" / "kodim23.png"  # 768x512; random pixels if missing


SPECS = ("default", "fixed9")
SPEC = {"name": "default"}  # set from --spec in main


def kan_spec() -> NetSpec:
    """The architecture ``kancoin encode`` picks for a 768x512 RGB image at 0.3 bpp: with the
    default options (range coding), or with fixed 9-bit coding (``--spec fixed9``)."""
    return _kan_spec(SPEC["name"])


@functools.cache
def _kan_spec(name: str) -> NetSpec:  # rate control's search: ~50 ms, asked for many times
    if name == "fixed9":
        return choose("kan", HEIGHT, WIDTH, CHANNELS, BPP, BITS)  # fixed coding, BITS each
    return plan((HEIGHT, WIDTH, CHANNELS), EncodeOptions(arch="kan", bpp=BPP))


def siren_spec() -> SirenSpec:
    return SirenSpec(SIREN_WIDTHS)


def make_kan(backend: str) -> KAN:
    """The benchmark's KAN (first-layer grid included) on the given B-spline backend."""
    return family("kan").build(kan_spec(), backend=backend)


# name -> (thread-policy arch, constructor)
MODELS = {
    "ours": ("kan", lambda: build(kan_spec())),
    "reference": ("kan", lambda: make_kan("reference")),
    "dense": ("kan", lambda: make_kan("dense")),
    "siren": ("siren", lambda: build(siren_spec())),
}
# the spec whose family's thread policy an arch gets
POLICY_SPECS = {"kan": kan_spec, "siren": siren_spec}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    import numba

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "usable_cores": runtime.usable_cores(),
    }


def apply_policy(arch: str, n: int) -> dict:
    """kancoin's thread policy for ``arch``'s benchmark network; returns what it set."""
    import numba

    spec: NetSpec = POLICY_SPECS[arch]()
    runtime.configure(spec, n)
    return {"torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads()}


# --- training step -----------------------------------------------------------------------------


def batches(device: torch.device, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (coords, targets) batches of random pixels of the 768x512 grid, coords in [-1, 1]."""
    coords = coordinates(HEIGHT, WIDTH)
    return [(coords[idx].to(device), t) for idx, t in pixel_batches(device, n, seed)]


def pixel_batches(
    device: torch.device, n: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (pixel indices, targets) batches of random pixels of the 768x512 grid."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randint(0, HEIGHT * WIDTH, (BATCH,), generator=gen)
        target = torch.rand(BATCH, CHANNELS, generator=gen)
        out.append((idx.to(device), target.to(device)))
    return out


class StepTimer:
    """One model's training step (forward + backward + Adam, fused as in ``kancoin.fit``)."""

    def __init__(self, name: str, n_threads: int, device: torch.device, args) -> None:
        arch, make = MODELS[name]
        family_name = arch  # the network's own family (its predictor)
        if name in ("reference", "dense") and args.baseline_policy == "torch":
            arch = "siren"  # torch N threads
        self.arch, self.n_threads, self.device = arch, n_threads, device
        self.policy = apply_policy(arch, n_threads)
        torch.manual_seed(0)
        self.model = make().to(device).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)
        # a training step as kancoin.codec.fit takes it: pixel indices -> outputs
        self.predict = family(family_name).predictor(self.model, HEIGHT, WIDTH, device)
        self.data = pixel_batches(device, 4)
        self.i = 0
        self.backend = "siren"
        if isinstance(self.model, KAN):
            probe = torch.zeros(1, 2, device=device)
            self.backend = self.model.layers[0].resolve_backend(probe)

    def step(self) -> None:
        x, y = self.data[self.i % len(self.data)]
        self.i += 1
        loss = torch.mean((self.predict(x) - y) ** 2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def run(self, steps: int) -> float:
        """ms per step over ``steps`` steps (thread policy applied first)."""
        apply_policy(self.arch, self.n_threads)
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        return 1000 * (time.perf_counter() - t0) / steps


def bench_steps(names: list[str], n_threads: int, device: torch.device, args) -> tuple[dict, dict]:
    """Interleaved timing: each run times every model in turn, so a slow spell of the host
    (this VM's step times drift by 2x over minutes) hits all of them alike. Returns the
    per-model times and the ratios ours / other, medians of the per-run ratios (the reference
    runs only in the first ``--ref-runs`` runs: paired with ours of those runs)."""
    timers = {name: StepTimer(name, n_threads, device, args) for name in names}
    slow = {"reference"}
    for name, t in timers.items():
        warmup = 1 if name in slow else args.warmup
        if warmup:
            t.run(warmup)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.runs):
        for name, t in timers.items():
            if name in slow and r >= args.ref_runs:
                continue
            times[name].append(t.run(1 if name in slow else args.steps))
    out = {}
    for name, t in timers.items():
        out[name] = {
            "ms": statistics.median(times[name]),
            "min_ms": min(times[name]),
            "runs": len(times[name]),
            "steps_per_run": 1 if name in slow else args.steps,
            "backend": t.backend,
            "params": sum(p.numel() for p in t.model.parameters()),
            **t.policy,
        }
    ratios = {}
    if "ours" in times:
        ours = times["ours"]
        ratios = {
            other: statistics.median(a / b for a, b in zip(ours, times[other], strict=False))
            for other in names
            if other != "ours"
        }
    return out, ratios


# --- equality -----------------------------------------------------------------------------------


def _run(make, state: dict, x: torch.Tensor, backend: str, dev: torch.device):
    """Outputs and the gradients of sum(out * g) (parameters, then x) of ``make(backend)``
    holding ``state``, on dev."""
    m = make(backend)
    m.load_state_dict(state)
    m.to(dev)
    xi = x.detach().clone().to(dev).requires_grad_(True)
    y = m(xi)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(dev)
    (y * gy).sum().backward()
    grads = [p.grad.detach().cpu() for p in m.parameters()] + [xi.grad.detach().cpu()]
    return y.detach().cpu(), grads


def _compare(
    make, state: dict, x: torch.Tensor, backend: str, dev: torch.device, reference
) -> dict:
    """Max abs diff of outputs and max relative diff of the gradients of sum(out * g),
    backend on dev against ``reference`` (``_run`` of the reference backend on CPU), same
    weights and inputs."""
    y_ref, g_ref = reference
    y, grads = _run(make, state, x, backend, dev)
    rel = max(
        float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        for a, b in zip(grads, g_ref, strict=True)
    )
    return {
        "out_max_abs": float((y - y_ref).abs().max()),
        "out_max_ref": float(y_ref.abs().max()),
        "grad_max_rel": rel,
    }


def check_equal(device: torch.device, samples: int = BATCH) -> dict:
    """Fused (and dense; on CUDA the auto backend) vs reference on the same weights: the whole
    network at its initial weights and with O(1) spline coefficients, and one hidden layer
    (W -> W), on ``samples`` inputs."""
    s = kan_spec()
    x = batches(torch.device("cpu"), 1, seed=1)[0][0][:samples]
    x = torch.cat([x, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.999999, -0.999999]])])
    torch.manual_seed(0)
    init_state = make_kan("reference").state_dict()
    big = make_kan("reference")
    with torch.no_grad():  # trained-size coefficients: outputs O(1) rather than ~0.01
        for layer in big.layers:
            layer.spline_weight.normal_(0.0, 0.5)
    big_state = big.state_dict()
    width = s.widths[1]

    def make_layer(backend: str) -> torch.nn.Module:
        return KANLinear(width, width, s.grid_size, s.spline_order, s.grid_range, backend=backend)

    layer_state = make_layer("reference").state_dict()
    with torch.no_grad():
        layer_state["spline_weight"].normal_(0.0, 0.5)
    # hidden activations: inside the grid and a little outside it
    xl = torch.rand(samples, width, generator=torch.Generator().manual_seed(3)) * 2.4 - 1.2
    backends = [("fused", torch.device("cpu")), ("dense", torch.device("cpu"))]
    if device.type == "cuda":
        backends.append(("auto", device))
    cases = {
        "net init": (make_kan, init_state, x),
        "net big-coef": (make_kan, big_state, x),
        f"layer {width}->{width}": (make_layer, layer_state, xl),
    }
    cpu = torch.device("cpu")
    references = {name: _run(*case, "reference", cpu) for name, case in cases.items()}
    out = {}
    for backend, dev in backends:
        for name, case in cases.items():
            out[f"{backend}@{dev.type} {name}"] = _compare(*case, backend, dev, references[name])
    return out


# --- decode ------------------------------------------------------------------------------------


def kc_bytes() -> bytes:
    """A .kc file of the benchmark spec with untrained (quantized) weights; range-coded for the
    default spec (decode includes the range decoder), fixed 9-bit for ``--spec fixed9``."""
    spec = kan_spec()
    torch.manual_seed(0)
    model = build(spec)
    qtensors, qparams = [], []
    for w in export_arrays(model, spec):
        q, qp = quantize_tensor(w, BITS)
        qtensors.append(q)
        qparams.append(qp)
    coding = 0 if SPEC["name"] == "fixed9" else 1
    return serialise_bytes((HEIGHT, WIDTH, CHANNELS), spec, BITS, coding, qtensors, qparams)


def bench_decode(n_threads: int, args) -> dict:
    policy = apply_policy("kan", n_threads)
    data = kc_bytes()
    for _ in range(args.warmup):
        decode_bytes(data)
    totals, parses = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        read_bytes(data)
        parses.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        decode_bytes(data)
        totals.append(1000 * (time.perf_counter() - t0))
    return {
        "ms": statistics.median(totals),
        "min_ms": min(totals),
        "parse_ms": statistics.median(parses),
        "file_bytes": len(data),
        **policy,
    }


# --- peak memory (subprocess) ------------------------------------------------------------------


def _proc_status_mib(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def rss_now_mib() -> float | None:
    return _proc_status_mib("VmRSS")


def peak_rss_mib() -> float:
    """RSS high-water mark of this process. VmHWM (Linux) rather than getrusage's ru_maxrss:
    Linux carries ru_maxrss across fork + exec, so a child would report its parent's peak."""
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def image_pixels() -> np.ndarray:
    if IMAGE.exists():
        from kancoin.imageio import load_image

        pixels, _ = load_image(IMAGE)
        if pixels.shape == (HEIGHT, WIDTH, CHANNELS):
            return pixels
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=np.uint8)


def peak_child(what: str, n_threads: int, device: str, kc_path: str | None) -> dict:
    """Runs in its own process: the peak RSS of the whole process and of the work alone."""
    from kancoin.codec.encode import encode_pixels

    if what == "encode":
        inputs = image_pixels()
    else:
        assert kc_path is not None
        inputs = Path(kc_path).read_bytes()
        apply_policy("kan", n_threads)
    startup_peak = peak_rss_mib()  # imports + inputs
    before = rss_now_mib()
    was_reset = reset_peak_rss()
    t0 = time.perf_counter()
    if what == "encode":
        opts = EncodeOptions(arch="kan", bpp=BPP, iters=50, device=device, threads=n_threads)
        res = encode_pixels(inputs, opts)
        extra = {"file_bytes": res.file_bytes, "psnr": res.psnr}
    else:
        decode_bytes(inputs)
        extra = {"file_bytes": len(inputs)}
    seconds = time.perf_counter() - t0
    work_peak = peak_rss_mib()
    out = {
        "what": what,
        "startup_peak_mib": startup_peak,
        "rss_before_mib": before,
        # with the reset, work_peak is the high-water mark during the work alone
        "work_peak_mib": work_peak if was_reset else None,
        "process_peak_mib": max(startup_peak, work_peak),
        "seconds": seconds,
        **extra,
    }
    if what == "encode" and device == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def bench_peak(n_threads: int, device: torch.device) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        kc = Path(tmp) / "bench.kc"
        kc.write_bytes(kc_bytes())
        for what in ("encode", "decode"):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--peak",
                what,
                "--threads",
                str(n_threads),
                "--device",
                device.type,
                "--kc",
                str(kc),
                "--spec",
                SPEC["name"],
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                out[what] = {"error": proc.stderr.strip().splitlines()[-1:]}
                continue
            out[what] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# --- encode at equal steps ---------------------------------------------------------------------


def bench_encode(n_threads: int, device: torch.device, steps: int, repeats: int) -> dict:
    """``encode_pixels`` of the 768x512 image with ``--arch kan`` and ``--arch siren`` (each its
    default architecture and options, ``--iters steps``), in turn, ``repeats`` times: seconds
    of the whole encode (fit, best-checkpoint renders, QAT, rate control, decode check)."""
    from kancoin.codec.encode import encode_pixels

    pixels = image_pixels()
    secs: dict[str, list[float]] = {"kan": [], "siren": []}
    psnr = {}
    for _ in range(repeats):
        for arch in secs:
            opts = EncodeOptions(
                bpp=BPP, arch=arch, iters=steps, device=device.type, threads=n_threads
            )
            res = encode_pixels(pixels, opts)
            secs[arch].append(res.encode_seconds)
            psnr[arch] = res.psnr
    return {
        "steps": steps,
        "repeats": repeats,
        **{f"{a}_s": statistics.median(v) for a, v in secs.items()},
        **{f"{a}_psnr": p for a, p in psnr.items()},
        "ratio": statistics.median(a / b for a, b in zip(secs["kan"], secs["siren"])),
    }


# --- report ------------------------------------------------------------------------------------


def print_report(result: dict) -> None:
    meta = result["meta"]
    print(
        f"kancoin bench_fit  device={meta['device']}  torch {meta['torch']}  "
        f"numba {meta['numba']}  numpy {meta['numpy']}  python {meta['python']}"
    )
    print(
        f"CPU: {meta['cpu']}  ({meta['usable_cores']} usable cores, "
        f"load avg {meta['loadavg_1m']:.2f} at start)  "
        f"spec: {meta['spec']}  ({meta['kan_params']} params)"
    )
    if "gpu" in meta:
        print(f"GPU: {meta['gpu']}")
    print(
        f"step = forward + backward + Adam, batch {BATCH} of a {WIDTH}x{HEIGHT} grid; "
        f"median of runs after warm-up, models timed in turn; baseline policy: "
        f"{meta['baseline_policy']}; fused Adam"
    )
    for block in result["threads"]:
        n = block["threads"]
        steps = block["steps"]
        print()
        print(f"== threads = {n}")
        print(
            f"{'model':<10} {'backend':<10} {'torch/numba thr':>15} {'ms/step':>9} "
            f"{'min':>8} {'runs':>6}"
        )
        for name, r in steps.items():
            thr = f"{r['torch_threads']}/{r['numba_threads']}"
            runs = f"{r['runs']}x{r['steps_per_run']}"
            print(
                f"{name:<10} {r['backend']:<10} {thr:>15} {r['ms']:>9.2f} {r['min_ms']:>8.2f} "
                f"{runs:>6}"
            )
        if block["ratios"]:
            parts = [f"ours/{k} = {r:.3f}  ({1 / r:.1f}x)" for k, r in block["ratios"].items()]
            print(
                "ratios (median over runs of ms ours / ms other, timed in turn; speed-up in "
                "brackets): " + ";  ".join(parts)
            )
        if "decode" in block:
            d = block["decode"]
            print(
                f"decode 768x512 (.kc {d['file_bytes']} B): {d['ms']:.1f} ms median "
                f"(min {d['min_ms']:.1f}; of which parse {d['parse_ms']:.1f} ms), "
                f"torch/numba thr {d['torch_threads']}/{d['numba_threads']}"
            )
        if "encode" in block:
            e = block["encode"]
            print(
                f"encode 768x512 at {e['steps']} steps (median of {e['repeats']}, in turn): "
                f"kan {e['kan_s']:.1f} s ({e['kan_psnr']:.2f} dB), siren {e['siren_s']:.1f} s "
                f"({e['siren_psnr']:.2f} dB); kan/siren = {e['ratio']:.3f}"
            )
        for what, p in block.get("peak", {}).items():
            if "error" in p:
                print(f"peak RSS {what}: failed: {p['error']}")
                continue
            line = f"peak RSS {what}: process {p['process_peak_mib']:.0f} MiB"
            if p["work_peak_mib"] is not None and p["rss_before_mib"] is not None:
                line += (
                    f" (during the {what}: {p['work_peak_mib']:.0f} MiB, "
                    f"+{p['work_peak_mib'] - p['rss_before_mib']:.0f} MiB over the "
                    f"{p['rss_before_mib']:.0f} MiB after imports)"
                )
            line += f"; {p['seconds']:.1f} s"
            if "cuda_peak_mib" in p:
                line += f"; CUDA peak allocated {p['cuda_peak_mib']:.0f} MiB"
            print(line)
    eq = result.get("equality")
    if eq:
        print()
        for k, v in eq.items():
            print(
                f"equality {k:<26}: max |out diff| = {v['out_max_abs']:.2e} "
                f"(|out| max {v['out_max_ref']:.2f}); max rel grad diff = "
                f"{v['grad_max_rel']:.2e}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=None, help="default: all usable cores")
    ap.add_argument("--sweep-threads", action="store_true", help="run with 1 and 2 threads")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument(
        "--models",
        default="ours,reference,dense,siren",
        help="comma-separated subset of " + ",".join(MODELS),
    )
    ap.add_argument(
        "--spec",
        default="default",
        choices=SPECS,
        help="KAN architecture: the encoder's default (range coding) or fixed 9-bit coding's",
    )
    ap.add_argument("--runs", type=int, default=7, help="timed runs (median reported)")
    ap.add_argument("--steps", type=int, default=5, help="steps per timed run")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps / decodes")
    ap.add_argument("--ref-runs", type=int, default=3, help="timed 1-step runs of the reference")
    ap.add_argument(
        "--baseline-policy",
        default="kan",
        choices=("kan", "torch"),
        help="threads for the torch KAN backends: kan policy (torch 1 thread) or torch N threads",
    )
    ap.add_argument("--no-peak", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument(
        "--check-samples", type=int, default=BATCH,
        help="inputs of the fused / dense vs reference equality check",
    )  # fmt: skip
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument(
        "--encode-steps",
        type=int,
        default=0,
        help="also time kancoin's encode of the image with --arch kan / siren at this many steps",
    )
    ap.add_argument("--encode-repeats", type=int, default=2, help="encodes per arch, in turn")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--peak", choices=("encode", "decode"), help=argparse.SUPPRESS)
    ap.add_argument("--kc", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.peak:
        print(
            json.dumps(
                peak_child(args.peak, args.threads or runtime.usable_cores(), args.device, args.kc)
            )
        )
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = set(names) - set(MODELS)
    if unknown:
        sys.exit(f"unknown models {sorted(unknown)}; choose from {list(MODELS)}")
    SPEC["name"] = args.spec
    counts = [1, 2] if args.sweep_threads else [args.threads or runtime.usable_cores()]

    spec = kan_spec()
    meta = {
        **versions(),
        "device": str(device),
        "spec": spec.describe(),
        "kan_params": spec.n_params,
        "baseline_policy": args.baseline_policy,
        "batch": BATCH,
        "image": f"{WIDTH}x{HEIGHT}",
        "loadavg_1m": os.getloadavg()[0],
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    result: dict = {"meta": meta, "threads": []}
    for n in counts:
        steps, ratios = bench_steps(names, n, device, args)
        block: dict = {"threads": n, "steps": steps, "ratios": ratios}
        if not args.no_decode:
            block["decode"] = bench_decode(n, args)
        if not args.no_peak:
            block["peak"] = bench_peak(n, device)
        if args.encode_steps:
            block["encode"] = bench_encode(n, device, args.encode_steps, args.encode_repeats)
        result["threads"].append(block)
    apply_policy("kan", counts[-1])
    result["equality"] = check_equal(device, args.check_samples)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
