"""lmaudit: audit language models for their use of training data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
