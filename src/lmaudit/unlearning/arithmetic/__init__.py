"""Model-arithmetic unlearning methods, one per module; each registers itself in :data:`lmaudit.unlearning.ARITHMETIC`."""
