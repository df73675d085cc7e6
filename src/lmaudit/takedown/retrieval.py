"""BM25 retrieval over the protected corpus: which protected passage is a prompt about?

R-CAD (:mod:`lmaudit.takedown.rcad`) needs, for each prompt, the protected passage it would
lead the model to reproduce. CoTaEval hands its R-CAD the ground-truth passage (an oracle);
a deployed takedown has to find it, and BM25 over the protected corpus is the simple,
strong baseline for finding the document a fragment was cut from. The index is built by
``bm25s`` (Lù 2024, https://github.com/xhluca/bm25s): a maintained BM25 in numpy and scipy
sparse matrices, far faster than ``rank_bm25``, with its own save/load format.

Texts are tokenized by ``bm25s.tokenize``: lower-cased words of at least two word
characters, English stopwords removed, no stemming.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

_CONFIG = "lmaudit_bm25.json"


class Hits(NamedTuple):
    """Retrieval results for Q queries: ``indices`` (Q, k) int64 positions in the corpus,
    best first, -1 where no document shares a word with the query; ``scores`` (Q, k) float32
    BM25 scores (0 for the -1 entries)."""

    indices: np.ndarray
    scores: np.ndarray


class BM25Retriever:
    """A BM25 index of ``texts``, queried by text.

    Args:
        texts: The protected corpus, one passage per entry.
        ids: A stable id per text (default: "0", "1", ...), for reports.
        k1, b: BM25's term-frequency saturation and length normalisation (bm25s defaults,
            the usual Lucene values).
        stopwords: A stopword list name bm25s knows ("en", ...) or None to keep every word.

    Example:
        >>> r = BM25Retriever(["the cat sat on the mat", "a dog barked at the moon"], ["cat", "dog"])
        >>> r.retrieve(["which dog barked"]).indices.tolist(), r.top_passages(["zebra"])
        ([[1]], [None])
    """

    def __init__(self, texts: Sequence[str], ids: Sequence[str] | None = None, *, k1: float = 1.5, b: float = 0.75,
                 stopwords: str | None = "en"):
        import bm25s

        self.texts = [str(t) for t in texts]
        if not self.texts:
            raise ValueError("BM25Retriever needs at least one text")
        self.ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(self.texts))]
        if len(self.ids) != len(self.texts):
            raise ValueError(f"{len(self.ids)} ids for {len(self.texts)} texts")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must be unique")
        self.stopwords = stopwords
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(self._tokenize(self.texts), show_progress=False)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(list(texts), stopwords=self.stopwords, return_ids=False, show_progress=False)

    def __len__(self) -> int:
        return len(self.texts)

    def retrieve(self, query_texts: Sequence[str], k: int = 1) -> Hits:
        """The ``k`` best passages for each query (see :class:`Hits`)."""
        if not 1 <= k <= len(self.texts):
            raise ValueError(f"k must lie in [1, {len(self.texts)}] (the corpus size), got {k}")
        if not query_texts:
            return Hits(np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32))
        docs, scores = self._bm25.retrieve(self._tokenize(query_texts), k=k, show_progress=False)
        # bm25s ranks zero-score documents too (in no meaningful order): they matched no word.
        docs = np.where(scores > 0, docs, -1).astype(np.int64)
        return Hits(docs, np.where(scores > 0, scores, 0).astype(np.float32))

    def top_passages(self, query_texts: Sequence[str]) -> list[str | None]:
        """The best passage's text for each query, None where no passage shares a word with it."""
        return [self.texts[i] if i >= 0 else None for i in self.retrieve(query_texts, k=1).indices[:, 0]]

    def save(self, folder: str | Path) -> None:
        """Write the index, the texts and their ids to ``folder`` (bm25s's format plus one JSON file)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        corpus = [{"id": i, "text": t} for i, t in zip(self.ids, self.texts)]
        self._bm25.save(folder, corpus=corpus, show_progress=False)
        (folder / _CONFIG).write_text(json.dumps({"stopwords": self.stopwords, "n_texts": len(self.texts)}))

    @classmethod
    def load(cls, folder: str | Path) -> "BM25Retriever":
        """Read an index written by :meth:`save` (without re-indexing)."""
        import bm25s

        folder = Path(folder)
        if not (folder / _CONFIG).is_file():
            raise FileNotFoundError(f"{folder}: no {_CONFIG}; not a folder written by BM25Retriever.save")
        config = json.loads((folder / _CONFIG).read_text())
        bm25 = bm25s.BM25.load(folder, load_corpus=True, show_progress=False)
        if len(bm25.corpus) != config["n_texts"]:
            raise ValueError(f"{folder}: corpus.jsonl holds {len(bm25.corpus)} texts, {_CONFIG} says {config['n_texts']}")
        self = cls.__new__(cls)
        self.texts = [d["text"] for d in bm25.corpus]
        self.ids = [d["id"] for d in bm25.corpus]
        self.stopwords = config["stopwords"]
        bm25.corpus = None  # our own lists hold the texts
        self._bm25 = bm25
        return self
