"""Corpus tools: an exact-substring index over a corpus and attribution of texts to it."""
