"""kancoin: KAN implicit neural representations as an image codec."""

__version__ = "0.4.2"
