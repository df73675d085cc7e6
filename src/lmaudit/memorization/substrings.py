"""Exact longest common substrings and verbatim spans, in linear time, with a suffix automaton.

Public copying code often finds common runs greedily and without overlap, which can miss
the true longest common substring (CoTaEval). A suffix automaton of the reference answers,
for every position i of the output, the length of the longest run ending at i that also
occurs somewhere in the reference ("matching statistics"); the longest common substring is
their maximum, and the verbatim spans are the runs at least N long. Building the automaton
and scanning the output take O(len(reference) + len(output)) steps, for characters or for
words alike (any sequence of hashable items).
"""

from __future__ import annotations

from typing import Hashable, Sequence


class SuffixAutomaton:
    """The minimal automaton of all substrings of ``seq`` (Blumer et al. 1985).

    Each state is a class of substrings with the same end positions; ``link`` points to the
    state of the longest suffix in another class, ``length`` is the longest substring in
    the state. At most 2·len(seq) states.
    """

    def __init__(self, seq: Sequence[Hashable]):
        self.next: list[dict] = [{}]
        self.link: list[int] = [-1]
        self.length: list[int] = [0]
        last = 0
        for item in seq:
            cur = len(self.length)
            self.next.append({})
            self.link.append(0)
            self.length.append(self.length[last] + 1)
            p = last
            while p != -1 and item not in self.next[p]:
                self.next[p][item] = cur
                p = self.link[p]
            if p != -1:
                q = self.next[p][item]
                if self.length[p] + 1 == self.length[q]:
                    self.link[cur] = q
                else:  # split q: a clone keeps the shorter substrings that now end at cur too
                    clone = len(self.length)
                    self.next.append(dict(self.next[q]))
                    self.link.append(self.link[q])
                    self.length.append(self.length[p] + 1)
                    while p != -1 and self.next[p].get(item) == q:
                        self.next[p][item] = clone
                        p = self.link[p]
                    self.link[q] = self.link[cur] = clone
            last = cur

    def matching_lengths(self, seq: Sequence[Hashable]) -> list[int]:
        """For each i, the length of the longest suffix of ``seq[:i + 1]`` that is a substring."""
        out, state, length = [], 0, 0
        nxt, link, lengths = self.next, self.link, self.length
        for item in seq:
            while state and item not in nxt[state]:
                state = link[state]
                length = lengths[state]
            if item in nxt[state]:
                state, length = nxt[state][item], length + 1
            else:
                state, length = 0, 0
            out.append(length)
        return out


def longest_common_substring(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest contiguous run shared by ``a`` and ``b``.

    >>> longest_common_substring("the cat sat", "a cat sat down")
    8
    >>> longest_common_substring("the cat sat".split(), "a cat sat down".split())
    2
    """
    if not a or not b:
        return 0
    return max(SuffixAutomaton(b).matching_lengths(a))


def verbatim_spans(output: Sequence[Hashable], reference: Sequence[Hashable], *, min_length: int) -> list[tuple[int, int]]:
    """Half-open index ranges of ``output`` covered by runs of ≥ ``min_length`` found in ``reference``.

    Overlapping and touching runs are merged, so the spans are disjoint and sorted: what a
    report highlights as copied.

    >>> verbatim_spans("xx hello world yy", "say hello world", min_length=5)
    [(2, 14)]
    """
    if min_length < 1:
        raise ValueError(f"min_length must be at least 1, got {min_length}")
    if not output or not reference:
        return []
    return spans_from_matching(SuffixAutomaton(reference).matching_lengths(output), min_length=min_length)


def spans_from_matching(matching: Sequence[int], *, min_length: int) -> list[tuple[int, int]]:
    """Merged [start, end) runs of at least ``min_length`` from matching lengths.

    Every common run [s, e) of length ≥ N lies inside [e − m, e), m the matching length
    at e − 1, so these runs cover exactly the positions some long-enough common run covers;
    starts never decrease (m grows by at most one per step), so one pass merges them.
    """
    spans: list[tuple[int, int]] = []
    for end, n in enumerate(matching, start=1):
        if n >= min_length:
            start = end - n
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans
