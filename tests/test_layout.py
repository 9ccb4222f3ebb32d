"""The package layout: imports go one way, the decoder loads no training code, the field table in
the docs is the one the code declares, and the public API round-trips."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kancoin
from kancoin.metrics import psnr

from .conftest import crop, reference_decode

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kancoin"
FORMAT_DOC = ROOT / "docs" / "format.md"

# a layer may import its own layer and the ones below, never above
LAYERS = {
    "kancoin.cli": 5,
    "kancoin.eval": 4,
    "kancoin.research": 4,
    "kancoin.codec": 3,
    "kancoin.format": 2,
    "kancoin.nets": 1,
}
BOTTOM = 0  # errors, metrics, imageio, fileio, bitfields, the package's __version__


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return BOTTOM


def _imports(tree: ast.Module, module: str, top_level_only: bool) -> set[str]:
    """kancoin modules imported by a module (top level only: what importing it runs)."""
    out: set[str] = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("kancoin")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("kancoin"):
                for a in node.names:  # `from kancoin.x import y`: y may be a module
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if sub in _ALL else node.module)
    out.discard(module)
    return out


_ALL = {_module_name(p) for p in PACKAGE.rglob("*.py")}
_TREES = {_module_name(p): ast.parse(p.read_text("utf-8")) for p in PACKAGE.rglob("*.py")}


def test_module_level_imports_have_no_cycle() -> None:
    graph = {m: _imports(t, m, top_level_only=True) & _ALL for m, t in _TREES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 2:
            return
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [m]))
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_imports_go_one_way() -> None:
    """cli -> eval / research -> codec -> format -> nets -> bottom, lazy imports included (the
    package root, the public API, imports the codec lazily and is left out)."""
    bad = []
    for m, tree in _TREES.items():
        if m in ("kancoin", "kancoin.__main__"):  # the API facade and the entry point
            continue
        for n in _imports(tree, m, top_level_only=False) & _ALL:
            if n != "kancoin" and _layer(n) > _layer(m):
                bad.append(f"{m} -> {n}")
    assert not bad, bad


def test_no_module_is_huge() -> None:
    sizes = {p.name: len(p.read_text("utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 520, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_no_architecture_checks_outside_the_registry() -> None:
    """Only a family's own module may know its name: everything else asks the registry."""
    bad = []
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE).as_posix()
        if rel.startswith("nets/"):
            continue
        for n, line in enumerate(p.read_text("utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if any(f'{op} "{a}"' in code for op in ("==", "!=") for a in ("kan", "siren")):
                bad.append(f"{rel}:{n}: {line.strip()}")
    assert not bad, bad


def test_a_fresh_process_decodes_loading_no_training_code(encoded, fresh_process) -> None:
    """In a fresh process (conftest's ``fresh_process``): importing kancoin loads neither torch
    nor numba; decoding a file (the shared encode) loads no fitting, QAT, rate control,
    training kernels, eval or CLI module; and that process's decode and its command line's
    `kancoin decode` give the pixels this process decodes, of exactly the PSNR the encoder
    reported."""
    from PIL import Image

    img, kc, rep = encoded
    proc, png, npy = fresh_process
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-2000:]
    assert lines[0] == {"light": [], "loaded": []}
    assert {"decode_status": 0} in lines, proc.stderr[-2000:]
    here = kancoin.decode(kc.read_bytes())
    assert here.shape == (40, 56, 3)
    assert np.array_equal(np.load(npy), here)
    dec = Image.open(png)
    assert dec.mode == "RGB" and dec.size == (56, 40)
    assert np.array_equal(np.asarray(dec), here)
    original = np.asarray(Image.open(img).convert("RGB"))
    assert psnr(here, original) == pytest.approx(rep["psnr"], abs=1e-4)  # rep: 4 decimals


def test_field_table_in_the_docs_is_generated() -> None:
    """docs/format.md holds the table the code declares; regenerate it with
    ``python scripts/gen_format_doc.py``."""
    from kancoin.format.layout import field_table_markdown, versions_markdown

    text = FORMAT_DOC.read_text("utf-8")
    begin, end = "<!-- fields:begin -->\n", "<!-- fields:end -->"
    assert begin in text and end in text
    table = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert table == field_table_markdown().strip(), "run python scripts/gen_format_doc.py"
    vbegin, vend = "<!-- versions:begin -->\n", "<!-- versions:end -->"
    versions = text.split(vbegin, 1)[1].split(vend, 1)[0].strip()
    assert versions == versions_markdown().strip(), "run python scripts/gen_format_doc.py"


def test_public_api_round_trip(tmp_path: Path) -> None:
    px = crop(24, 32)
    enc = kancoin.encode(px, arch="kan", bpp=4.0, iters=40, device="cpu", threads=1)
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (24 * 32)) and enc.bpp <= 4.0
    decoded = kancoin.decode(enc.data)
    assert decoded.shape == (24, 32, 3) and decoded.dtype == np.uint8
    assert np.array_equal(decoded, enc.decoded.pixels)
    # the reported PSNR is the file's: checked against an independent float64 decode
    assert psnr(reference_decode(enc.data), px) == pytest.approx(enc.psnr, abs=0.05)
    path = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(px[..., :1].squeeze()).save(path)  # a path, grey
    grey = kancoin.encode(path, arch="kan", bpp=6.0, iters=20, device="cpu", basis="rbf",
                          threads=1)  # fmt: skip
    assert kancoin.decode(grey.data).shape == (24, 32, 1) and grey.spec.basis == "rbf"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bpp=0.0), "--bpp"),
        (dict(qat=1.0), "--qat"),
        (dict(basis="spline"), "--basis"),
        (dict(arch="siren", grid_size=8), "--grid-size"),
        (dict(colour=True), "colour"),
    ],
)
def test_public_api_refuses_bad_options_before_work(kwargs, message) -> None:
    from kancoin.errors import KancoinError

    kw = {"bpp": 0.3, **kwargs}
    with pytest.raises(KancoinError, match=message):
        kancoin.encode(crop(8, 8), **kw)


def test_python_dash_m_kancoin() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kancoin", "info", "--format"], capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "`first_grid_size`" in proc.stdout and "`e_model`" in proc.stdout


def test_a_missing_numba_is_a_clear_error_not_other_pixels(monkeypatch) -> None:
    """As if numba could not be imported: decoding a B-spline KAN is a one-line error, never a
    fallback to other arithmetic (which decoded other pixels)."""
    import kancoin.nets.kan
    from kancoin.errors import KancoinError

    # `from kancoin.nets.kan import kernels_decode` then fails as a missing numba makes it fail
    monkeypatch.setitem(sys.modules, "kancoin.nets.kan.kernels_decode", None)
    monkeypatch.delattr(kancoin.nets.kan, "kernels_decode", raising=False)
    with pytest.raises(KancoinError, match="B-spline KANs need numba") as e:
        kancoin.decode((ROOT / "tests" / "golden" / "tiny.kc").read_bytes())
    assert "\n" not in str(e.value)
