"""Shared fixtures: small real images cut from the bundled Kodak sample, and one real encode
through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "kodim23.png"


def crop(height: int, width: int, top: int = 200, left: int = 300) -> np.ndarray:
    arr = np.asarray(Image.open(SAMPLE).convert("RGB"))
    return arr[top : top + height, left : left + width].copy()


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    """A 40x56 RGB crop of kodim23 as a PNG file."""
    path = tmp_path / "small.png"
    Image.fromarray(crop(40, 56)).save(path)
    return path


@pytest.fixture(scope="session")
def encoded(tmp_path_factory) -> tuple[Path, Path, dict]:
    """One real `kancoin encode` (in this process) of a 40x56 crop, shared by the tests that
    need a file the command line wrote: (the PNG, the .kc file, the --json report). Read it,
    never change it."""
    from typer.testing import CliRunner

    from kancoin.cli import app

    d = tmp_path_factory.mktemp("e2e")
    img = d / "small.png"
    Image.fromarray(crop(40, 56)).save(img)
    out = d / "small.kc"
    args = ["--arch", "kan", "--bpp", "4", "--iters", "100", "--threads", "1", "--json",
            "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(app, ["encode", str(img), str(out), *args])
    assert res.exit_code == 0, res.stderr
    return img, out, json.loads(res.stdout)


@pytest.fixture(scope="session")
def fresh_process(encoded, tmp_path_factory):
    """The suite's one fresh decoding process (tests/fresh_process.py) on the shared encode:
    its import and decode checks, its command line's decode to a PNG, then a fuzz run of 200
    mutants (seed 1). (The CompletedProcess, the PNG, the .npy of its ``kancoin.decode``.)"""
    import os
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("fresh")
    png, npy = d / "dec.png", d / "dec.npy"
    script = str(ROOT / "tests" / "fresh_process.py")
    proc = subprocess.run(
        [sys.executable, script, str(encoded[1]), str(png), str(npy), "200", "1"],
        capture_output=True, text=True, timeout=3000, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return proc, png, npy


def reference_decode(data: bytes) -> np.ndarray:
    """An independent decode of a .kc file: the container is parsed, but the network is
    evaluated per pixel in float64 with torch ops (the B-spline layers on efficient-kan's
    Cox–de Boor recursion): none of the decoder's kernels, separable path or rendering code.
    It agrees with ``kancoin decode`` to within float rounding (a KAN: a level at a few pixels;
    a SIREN's sines amplify rounding: a level at many pixels, the PSNR within ~0.01 dB), so a
    PSNR checked against it checks that the reported number is the file's."""
    import torch

    from kancoin.format.container import read_bytes
    from kancoin.format.quant import dequantize
    from kancoin.nets import build, load_arrays
    from kancoin.nets.kan.layers import KANLinear

    header, qtensors = read_bytes(data)
    model = build(header.spec)
    floats = [dequantize(q, qp) for q, qp in zip(qtensors, header.qparams)]
    load_arrays(model, header.spec, floats)
    model = model.double()
    for m in model.modules():
        if isinstance(m, KANLinear):
            m.backend = "reference"
    h, w = header.height, header.width

    def axis(n: int) -> torch.Tensor:
        f64 = torch.float64
        return torch.linspace(-1, 1, n, dtype=f64) if n > 1 else torch.zeros(1, dtype=f64)

    ys, xs = torch.meshgrid(axis(h), axis(w), indexing="ij")
    coords = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    with torch.no_grad():
        out = model(coords)
    return torch.round(out.clamp(0, 1) * 255).to(torch.uint8).reshape(h, w, -1).numpy()


# --- each test on the same thread counts ------------------------------------------------------


@pytest.fixture(autouse=True)
def _thread_counts():
    """Every test starts on numba's every thread and torch's one: an encode sets both for the
    whole process (``codec.runtime.configure``), so without this a test would run on what the
    last encode before it chose (after a one-thread encode, the kernels on one chunk). numba on
    every core: the kernels split their batches into chunks as in an encode; torch on one: the
    suite's tensors are small (the encoder's own choice for a B-spline KAN), and a decode renders
    on one (``runtime.torch_threads``)."""
    import sys

    numba, torch = sys.modules.get("numba"), sys.modules.get("torch")
    if numba is not None and numba.get_num_threads() != numba.config.NUMBA_NUM_THREADS:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield


# --- the numba kernels of a clean checkout compile beside a full run (tests/numba_warmup.py) ---

_WARMUP: list = []


def _whole_suite(config) -> bool:
    """A run of the whole suite (``pytest``, ``pytest tests``), not of chosen tests."""
    if config.getoption("keyword") or config.getoption("lf", False):
        return False
    tests = ROOT / "tests"
    return all(Path(a).resolve() in (tests, ROOT) for a in config.args)


def pytest_configure(config) -> None:
    """A run of the whole suite starts the kernels' warm-up in a second process (while this one
    collects): in a clean checkout their first compile is shared with the second core. Off with
    KANCOIN_TEST_WARMUP=0."""
    import os
    import subprocess
    import sys

    if os.environ.get("KANCOIN_TEST_WARMUP", "1") == "0" or not _whole_suite(config):
        return
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its controller warms up
        return
    quiet = subprocess.DEVNULL
    script = str(ROOT / "tests" / "numba_warmup.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _WARMUP.append(
        subprocess.Popen([sys.executable, script], stdin=quiet, stdout=quiet, stderr=quiet, env=env)
    )


# In a whole-suite run, the test files in the order tests/numba_warmup.py compiles the kernels
# they run (each file's own order is kept; a file not named here runs last): while the warm-up
# compiles, the test process runs files whose kernels it has already compiled.
KERNEL_ORDER = {
    # no numba kernel in this process
    **dict.fromkeys(
        ("test_bdrate.py", "test_bitstream.py", "test_entropy.py", "test_eval_scale.py",
         "test_quant.py", "test_ratecontrol.py", "test_sweep.py"), 0,
    ),
    # the table, forwards and gathers, 4-wide backward blocks
    **dict.fromkeys(
        ("test_bases.py", "test_bitalloc.py", "test_eval_errors.py", "test_fileio.py",
         "test_imageio.py", "test_golden.py", "test_latent.py", "test_latent_render.py"), 1,
    ),
    # 8-wide blocks: the shared encode (conftest's encoded) and the encodes of the same size
    **dict.fromkeys(
        ("test_cli.py", "test_eval.py", "test_layout.py", "test_limits.py",
         "test_quantstudy.py", "test_signals.py"), 2,
    ),
    "test_qat.py": 3,  # 16-wide blocks
    "test_bench.py": 4,  # 32-wide blocks
    "test_kan.py": 5,  # every kernel: the other orders
}  # fmt: skip


def pytest_collection_modifyitems(session, config, items) -> None:
    """With the warm-up running, the test files go in ``KERNEL_ORDER``."""
    if _WARMUP:
        last = max(KERNEL_ORDER.values()) + 1
        items.sort(key=lambda item: KERNEL_ORDER.get(item.path.name, last))


def pytest_sessionfinish(session) -> None:
    for proc in _WARMUP:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
