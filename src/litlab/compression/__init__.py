"""Compression of a trained net (pruning, structured pruning, quantization, distillation,
low-rank factorization) and export to ONNX/TorchScript.

Every file of ``conf/compress/`` builds one ``Compressor`` (``base.py``); ``run.py`` measures the
net before and after, saves the compressed artifact and writes ``compression.json``.
"""
