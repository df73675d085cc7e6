"""Watermarks: generation, detection, attacks and radioactivity.

- :mod:`~lmaudit.watermark.config`: the serialisable configuration checked before detection;
- :mod:`~lmaudit.watermark.schemes`: KGW green lists and Gumbel sampling, one file each;
- :mod:`~lmaudit.watermark.processor`: the logits processor and watermarked generation;
- :mod:`~lmaudit.watermark.detect` and :mod:`~lmaudit.watermark.spans`: exact tests, and
  window search with a corrected p-value;
- :mod:`~lmaudit.watermark.attacks` and :func:`~lmaudit.watermark.normalize.normalize`:
  offline attacks on watermarked text, and the detector's defence against character tricks.
"""
