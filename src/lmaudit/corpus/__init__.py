"""Corpus tools: where a text came from, how often it is in a corpus, and whether its owner consented.

- :mod:`~lmaudit.corpus.index`: a sharded byte-level suffix-array index (count, locate,
  longest, attribute);
- :mod:`~lmaudit.corpus.dedup`: near-duplicate clusters and near-copy counts (MinHash-LSH through
  rensa, every candidate verified by exact Jaccard);
- :mod:`~lmaudit.corpus.robots`, :mod:`~lmaudit.corpus.tdmrep`, :mod:`~lmaudit.corpus.consent`:
  robots.txt verdicts per AI crawler (RFC 9309), TDMRep reservations, and corpus weighting.
"""
