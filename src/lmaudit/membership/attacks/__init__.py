"""One module per membership attack; each registers itself in ``lmaudit.membership.base.ATTACKS``."""
