"""Unlearning: losses that remove a forget set from a model, the training loop and the
model-arithmetic methods that apply them (:mod:`lmaudit.unlearning.train`), the evaluation
that judges them against a model retrained without the forget set (:mod:`~lmaudit.unlearning.measure`,
:mod:`~lmaudit.unlearning.compare`, :mod:`~lmaudit.unlearning.evaluate`) and the benchmark
that sweeps every method through it (:mod:`lmaudit.unlearning.bench`).

Forget losses live one per module in ``forget/`` and retain regularisers one per module in
``retain/``, each registered by name; a method composes one of each:
``loss = forget(forget_batch) + weight * retain(retain_batch)``. Model-arithmetic methods
(task vector, Who's Harry Potter) live one per module in ``arithmetic/``: they fine-tune a copy
on the forget set and combine it with the original.
"""

from __future__ import annotations

from lmaudit.registry import Registry

FORGET_LOSSES = Registry("forget loss", package="lmaudit.unlearning.forget")
RETAIN_LOSSES = Registry("retain loss", package="lmaudit.unlearning.retain")
ARITHMETIC = Registry("model-arithmetic method", package="lmaudit.unlearning.arithmetic")
