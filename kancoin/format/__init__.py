"""The .kc file format: field tables (``layout``), container (``container``), entropy models
(``entropy``) and quantization (``quant``)."""
