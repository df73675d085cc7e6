"""Memorization and copying: extraction, literal and non-literal copying metrics, ACR."""
