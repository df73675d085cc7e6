"""Unlearning: losses that remove a forget set from a model, and (to come) the methods and the
evaluation that judges them against a model retrained without it (issue 13).

Forget losses live one per module in ``forget/`` and retain regularisers one per module in
``retain/``, each registered by name; a method composes one of each:
``loss = forget(forget_batch) + weight * retain(retain_batch)``.
"""

from __future__ import annotations

from lmaudit.registry import Registry

FORGET_LOSSES = Registry("forget loss", package="lmaudit.unlearning.forget")
RETAIN_LOSSES = Registry("retain loss", package="lmaudit.unlearning.retain")
