"""Encode one image with the latent family under several settings; one JSON line per run.

    python scripts/latent_runs.py IMAGE SETTING_JSON...

Each SETTING_JSON holds encoder options (``kancoin.codec.options.EncodeOptions``) and, under
"recipe", fields of ``kancoin.codec.latent_recipe.LatentRecipe`` that change the recipe `kancoin
encode` uses with those options; under "context" the latent context model (``{"context":
K, "predictor": 0 or 1}``, the file's fields) and under "family" other choices of the family
(``kancoin.nets.latent``'s ``DEFAULT_*`` names, e.g. ``{"DEFAULT_BOUND": 3.0}``), e.g.

    python scripts/latent_runs.py data/kodim23.png '{"bpp": 0.3, "iters": 1500}' \
        '{"bpp": 0.3, "iters": 1500, "recipe": {"lr": 0.05}}' \
        '{"bpp": 0.3, "iters": 1500, "context": {"context": 4, "predictor": 0}}'

Every figure is the written file's: PSNR of its decode, bpp of its size (docs/research/latent.md).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import kancoin.nets.latent as latent_family
from kancoin.codec.latent import encode_latent
from kancoin.codec.latent_recipe import default_recipe
from kancoin.codec.options import EncodeOptions
from kancoin.imageio import load_image


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    pixels, _ = load_image(argv[0])
    for text in argv[1:]:
        setting = json.loads(text)
        changes = setting.pop("recipe", {})
        # the family's choices (kancoin.nets.latent's DEFAULT_*), for this run only
        family = {f"DEFAULT_{k.upper()}": v for k, v in setting.pop("context", {}).items()}
        family |= setting.pop("family", {})
        opts = EncodeOptions(arch="latent", **{"device": "cpu", **setting})
        # the recipe `kancoin encode` would use with these options, then the changes
        base = default_recipe(opts)
        recipe = replace(base, **changes)
        saved = {name: getattr(latent_family, name) for name in family}
        for name, value in family.items():
            setattr(latent_family, name, tuple(value) if isinstance(value, list) else value)
        t0 = time.perf_counter()
        try:
            res = encode_latent(pixels, opts, recipe=recipe)
        finally:
            for name, value in saved.items():
                setattr(latent_family, name, value)
        d = res.as_dict()
        row = {
            "setting": text, "psnr": d["psnr"], "bpp": round(d["bpp"], 4),
            "seconds": round(time.perf_counter() - t0, 1), "steps": d["steps"],
            "step_ms": d["step_ms"],
            "lmbda": d["lmbda"], "deadzone": d["deadzone"],
            "synthesis_bits": d["synthesis_bits"],
            "payload_bits_estimated": d["payload_bits_estimated"],
            "payload_bits_coded": 8 * d["payload_bytes"], "architecture": d["architecture"],
            "latent_bits_training": d["latent_bits_training"],
            "latent_bits_coded": d["latent_bits_coded"],
        }  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
