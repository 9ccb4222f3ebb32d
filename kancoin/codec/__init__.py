"""The codec: ``encode`` (rate control, fitting, QAT, quantization, the file measured through
its decoder) and ``decode`` (format + networks only). Import the modules you need: this package
imports nothing eagerly, so the decoder never loads training code."""
