import pytest

from lmaudit.testbed.build import build_testbed


@pytest.fixture(scope="session")
def tiny_testbed(tmp_path_factory):
    """The tiny testbed, built once per test session (~15 s)."""
    out = tmp_path_factory.mktemp("tiny-testbed")
    info = build_testbed(out, seed=0, size="tiny")
    return out, info
