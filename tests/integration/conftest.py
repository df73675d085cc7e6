import pytest

from lmaudit.testbed.build import build_testbed


@pytest.fixture(scope="session")
def tiny_testbed(tmp_path_factory):
    """The tiny testbed, built once per test session (~15 s)."""
    out = tmp_path_factory.mktemp("tiny-testbed")
    info = build_testbed(out, seed=0, size="tiny")
    return out, info


@pytest.fixture(scope="session")
def tiny_shifted_testbed(tmp_path_factory):
    """The tiny testbed with non-members of another era (``shift="era"``), built once per session (~15 s).

    Its members, tokenizer and model are those of ``tiny_testbed``; only the non-members differ.
    """
    out = tmp_path_factory.mktemp("tiny-shifted-testbed")
    info = build_testbed(out, seed=0, size="tiny", shift="era")
    return out, info
