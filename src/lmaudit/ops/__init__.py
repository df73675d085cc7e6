"""Neutral tensor helpers that backends and audits both use: padding and the scoring kernel.

Nothing here imports another lmaudit module, so a backend (``models/hf.py``, a future vLLM
backend) and an audit (the testbed trainer, the masked-LM perturber) can share them without
importing each other.
"""
