"""Telling the first step of a ``generate`` call from the later ones, inside a logits processor.

Hugging Face ``generate`` calls each logits processor once per step with the whole sequence
so far, ``input_ids`` (B, T), and nothing else: no step counter, no attention mask, no sign
that a new call began. :meth:`lmaudit.models.hf.HFModel.generate` runs one ``generate`` per
length bucket with the same processor objects, so a processor that keeps state between steps
(a KV cache, a random stream) must notice when a new batch starts. The rule used here: a call
continues the previous one exactly when its ``input_ids`` are the previous call's plus one
new column; anything else starts a new batch.

The rule's one blind spot: feeding the previous call's sequences plus one token back in as
the prompts of a new ``generate`` call (a token-by-token loop of one-step calls) is taken as
the same generation continuing, which for these processors is what such a loop means anyway.
"""

from __future__ import annotations

import torch


class StepTracker:
    """Remembers the last ``input_ids`` a processor saw and says whether a call starts a new batch.

    Example:
        >>> t = StepTracker()
        >>> t.is_new(torch.tensor([[5, 6]])), t.is_new(torch.tensor([[5, 6, 7]])), t.is_new(torch.tensor([[5, 6]]))
        (True, False, True)
    """

    def __init__(self) -> None:
        self._ids: torch.Tensor | None = None

    def is_new(self, input_ids: torch.Tensor) -> bool:
        """True when ``input_ids`` (B, T) do not extend the previous call's by exactly one column."""
        prev, self._ids = self._ids, input_ids
        if prev is None or input_ids.shape[0] != prev.shape[0] or input_ids.shape[1] != prev.shape[1] + 1:
            return True
        # generate() builds each step's ids with torch.cat, so the previous tensor is intact.
        return not torch.equal(input_ids[:, :-1], prev.to(input_ids.device))

    def reset(self) -> None:
        """Forget the last call: the next one starts a new batch whatever its ids."""
        self._ids = None
