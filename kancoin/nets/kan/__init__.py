"""The KAN family: B-spline KANs with fused CPU kernels, and other edge functions."""

from kancoin.nets.kan.spec import BASES, KanSpec

__all__ = ["BASES", "KanSpec"]
