"""Watermarks: generation, detection, attacks, radioactivity."""
