"""Forget losses, one per module; each registers itself in :data:`lmaudit.unlearning.FORGET_LOSSES`."""
