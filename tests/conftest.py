"""Shared fixtures: small real images cut from the bundled Kodak sample."""

from __future__ import annotations

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
