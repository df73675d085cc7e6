"""Corpus tools: where a text came from, how often it is in a corpus, and whether its owner consented."""
