"""The .kc file format, declared once: the field tables every reader, writer and doc derives from.

Layout (big-endian, bit-packed, no alignment between fields):

    HEADER_FIELDS                        fixed header
    HIDDEN_WIDTH_FIELD × (n_layers − 1)  widths of the hidden layers
    the family's fields                  architecture hyperparameters (``arch``: kancoin.nets)
    TENSOR_FIELDS × n_tensors            bit depth and quantization range of each stored tensor
    ENTROPY_FIELDS × n_tensors           (coding 1 only) each tensor's entropy model
    payload   coding 0 (fixed):  every tensor's integers, ``t_bits`` bits each, tensors in order,
                                 then zero bits up to the next byte
              coding 1 (range):  zero bits up to the next byte, then the range-coded stream
                                 (``entropy``) up to the CRC
    CRC32 (32 bits)                      over all preceding bytes

Every field says since which version it is stored and its value before (``bitfields.Field``);
older versions are read, only ``VERSION`` is written. A new version is ``VERSION`` + 1 and the
fields it adds (or stores wider, with ``until`` on the old one). The input width (2: x, y) and
output width (channels) and the tensor list follow from the header and the family, so they are
not stored.
"""

from __future__ import annotations

from kancoin.bitfields import Field, markdown_rows
from kancoin.format.entropy import KINDS
from kancoin.format.quant import MAX_BITS, MIN_BITS
from kancoin.imageio import MAX_SIDE
from kancoin.nets import entries, families

MAGIC = b"KANC"
VERSION = 11
# what each version added (docs/format.md)
VERSIONS = {
    1: "fixed-width payload, every tensor at the header's bits; B-spline KAN or SIREN",
    2: "range coding (`coding`, entropy models) and a bit depth per tensor (`t_bits`)",
    3: "KAN edge functions other than B-splines, node bias, LayerNorm",
    4: "the first KAN layer's own grid (`first_grid_size`)",
    5: "`e_model` 4 bits wide: room for 16 entropy-model kinds",
    6: "the latent family (arch 2): entropy-coded latent grids and a KAN synthesis",
    7: "the latents' predictor (`predictor`): Laplaces centred on a prediction from 4 "
       "causal neighbours",
    8: "the latents' autoregressive network (`arm`): Laplaces from a small fixed-point "
       "network of 7 causal neighbours",
    9: "the latent family's MLP synthesis (`synthesis`)",
    10: "the MLP synthesis in fixed point (`fixed_frac`): exact matrix products, a GELU table",
    11: "the network-coded grids line by line across the pyramid (`arm_order`)",
}
READ_VERSIONS = tuple(VERSIONS)
CODINGS = ("fixed", "range")
CRC_BITS = 32

HEADER_FIELDS = (
    Field("magic", "bytes:4", doc="b'KANC'"),
    Field("version", "uint:8", 1, VERSION, doc="format version"),
    Field("height", "uint:16", 1, MAX_SIDE, doc="image height H"),
    Field("width", "uint:16", 1, MAX_SIDE, doc="image width W"),
    Field("channels", "uint:2", choices=(1, 3), doc="1 (grey) or 3 (RGB)"),
    Field("arch", "uint:2", choices=tuple(e.arch_id for e in entries()),
          doc="network family: " + ", ".join(f"{e.arch_id} {e.label}" for e in entries())),
    Field("bits", "uint:5", MIN_BITS, MAX_BITS, doc="bits per weight requested (largest t_bits)"),
    Field("coding", "uint:1", 0, 1, since=2, default=0,
          doc="payload coding: 0 fixed-width, 1 range-coded"),
    Field("n_layers", "uint:5", 1, 31, doc="number of layers"),
)  # fmt: skip
HIDDEN_WIDTH_FIELD = Field("hidden_width", "uint:12", 1, 4095, doc="one hidden layer's width")
TENSOR_FIELDS = (
    Field("t_bits", "uint:5", MIN_BITS, MAX_BITS, since=2, default_from="bits",
          doc="bits of this tensor's integers"),
    Field("q_lo", "floatbe:32", -1e30, 1e30, doc="value of integer 0"),
    Field("q_step", "floatbe:32", 1e-38, 1e30, doc="quantization step"),
)  # fmt: skip
_KIND_DOC = ", ".join(f"{i} quantized {k.name.capitalize()}" for i, k in KINDS.items())
ENTROPY_FIELDS = (
    Field("e_model", "uint:1", 0, 1, since=2, until=4, doc=_KIND_DOC),
    Field("e_model", "uint:4", 0, max(KINDS), since=5, doc=_KIND_DOC),
    Field("e_mean", "floatbe:16", -65504, 65504, since=2, doc="model mean, in integer units"),
    Field("e_scale", "floatbe:16", 1e-3, 65504, since=2,
          doc="std (Gaussian) or scale (Laplace)"),
)  # fmt: skip


def field_table_markdown() -> str:
    """The format as a Markdown table (docs/format.md, ``kancoin info --format``)."""
    rows = [
        "| section | field | bits | valid values | versions | meaning |",
        "|---|---|---|---|---|---|",
    ]
    rows += markdown_rows("header", HEADER_FIELDS)
    rows += markdown_rows("× (n_layers − 1)", [HIDDEN_WIDTH_FIELD])
    for fam in families():
        rows += markdown_rows(f"{fam.label} (arch {fam.arch_id})", fam.header_fields)
    rows += markdown_rows("× tensors", TENSOR_FIELDS)
    rows += markdown_rows("× tensors, coding 1", ENTROPY_FIELDS)
    rows.append(
        "| payload, coding 0 | weights | Σ size × t_bits | 0 … 2^t_bits − 1 | all | tensors in "
        "order, then zero bits to a byte boundary |"
    )
    rows.append(
        "| payload, coding 1 | stream | 8 × bytes | — | ≥ 2 | zero bits to a byte boundary, then "
        "the range-coded stream (32-bit words, big-endian, trailing zero bytes dropped) |"
    )
    rows.append("| end | `crc32` | 32 | — | all | CRC-32 of all preceding bytes |")
    return "\n".join(rows)


def versions_markdown() -> str:
    lines = ["| version | added |", "|---|---|"]
    lines += [f"| {v} | {text} |" for v, text in VERSIONS.items()]
    return "\n".join(lines)
