"""Corpus tools: where a text came from, how often it is in a corpus, and whether its owner consented.

- :mod:`~lmaudit.corpus.index`: a sharded byte-level suffix-array index (count, locate,
  longest, attribute);
- :mod:`~lmaudit.corpus.robots`, :mod:`~lmaudit.corpus.tdmrep`, :mod:`~lmaudit.corpus.consent`:
  robots.txt verdicts per AI crawler (RFC 9309), TDMRep reservations, and corpus weighting.
"""
