"""Retain regularisers, one per module; each registers itself in :data:`lmaudit.unlearning.RETAIN_LOSSES`."""
