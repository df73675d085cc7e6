"""Membership and dataset inference: per-document attacks, their evaluation, dataset-level tests."""
