"""Copy-paste: runs of watermarked text pasted into human text (Kirchenbauer et al. 2023b)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import ATTACKS, Attacked, rng_for, word_spans


@ATTACKS.register("copy_paste")
@dataclass(frozen=True)
class CopyPaste:
    """Paste ``n_spans`` runs of ``span_words`` consecutive watermarked words into a human text.

    Kirchenbauer et al. ("On the Reliability of Watermarks for Large Language Models", 2023,
    Sec. 4) model a writer who keeps a few passages of generated text inside their own: the
    watermarked share of the tokens shrinks, so whole-text detection weakens while windowed
    detection (WinMax) may still find the runs.

    The runs are non-overlapping and drawn uniformly among all such placements in the
    watermarked text; each is pasted exactly as it appears there (inner whitespace kept) at
    a word boundary of the human text, in their order in the watermarked text, with a single
    space between a run and its neighbours. Boundaries are distinct when the human text has
    enough of them (n_words + 1), so runs are separated by human words; otherwise some runs
    share a boundary and follow one another. The human text is otherwise kept as it is.
    :attr:`Attacked.watermarked` holds the runs' character spans in the output.

    Example:
        >>> out = CopyPaste(n_spans=1, span_words=2).apply("w1 w2 w3", human="h1 h2", seed=0)
        >>> [out.text[a:b] for a, b in out.watermarked][0] in ("w1 w2", "w2 w3")
        True

    Attributes:
        n_spans: Number of runs pasted (at least 1).
        span_words: Words per run (at least 1); the watermarked text needs at least
            ``n_spans · span_words`` words.
    """

    n_spans: int = 1
    span_words: int = 50

    name: ClassVar[str] = "copy_paste"

    def __post_init__(self) -> None:
        for field in ("n_spans", "span_words"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.name}: {field} must be a positive integer, got {value!r}")

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        """Runs of ``text`` pasted into ``human``.

        Raises:
            ValueError: No human text, or a watermarked text with fewer words than the runs need.
        """
        if human is None:
            raise ValueError(f"{self.name} pastes watermarked runs into a human text: pass human=...")
        spans = word_spans(text)
        need = self.n_spans * self.span_words
        if len(spans) < need:
            raise ValueError(f"{self.name}: the watermarked text has {len(spans)} words, fewer than the {need} "
                             f"that n_spans={self.n_spans} runs of span_words={self.span_words} need")
        rng = rng_for(seed, self.name, text, human)
        # Uniform over non-overlapping placements: choose n_spans of the free + n_spans slots
        # (free = words left outside the runs); the i-th chosen slot c_i starts run i at
        # word c_i + i·(span_words − 1).
        free = len(spans) - need
        slots = sorted(int(c) for c in rng.choice(free + self.n_spans, size=self.n_spans, replace=False))
        runs = []
        for i, c in enumerate(slots):
            first = c + i * (self.span_words - 1)
            runs.append(text[spans[first][0]: spans[first + self.span_words - 1][1]])
        hspans = word_spans(human)
        n_bound = len(hspans) + 1
        if n_bound >= self.n_spans:
            at = sorted(int(b) for b in rng.choice(n_bound, size=self.n_spans, replace=False))
        else:
            at = sorted(int(b) for b in rng.integers(n_bound, size=self.n_spans))
        if not hspans:
            out = " ".join(runs)
            starts = [sum(len(r) + 1 for r in runs[:i]) for i in range(len(runs))]
            return Attacked(out, tuple((s, s + len(r)) for s, r in zip(starts, runs)))
        pieces, marks, last, length = [], [], 0, 0
        for b, run in zip(at, runs):
            # Boundary b < n words: before word b ("run "); b = n: after the last word (" run").
            pos = hspans[b][0] if b < len(hspans) else hspans[-1][1]
            head = human[last:pos] + ("" if b < len(hspans) else " ")
            pieces.append(head)
            length += len(head)
            marks.append((length, length + len(run)))
            pieces.append(run + (" " if b < len(hspans) else ""))
            length += len(pieces[-1])
            last = pos
        pieces.append(human[last:])
        return Attacked("".join(pieces), tuple(marks))
