"""The ``browser`` fixture: one headless Chromium for the whole session (README.md here says how
to run these tests).

Any test that uses it is marked ``browser``. If Chromium or chromedriver is missing or will not
start, those tests fail with the reason and the fix: a report never opened in a browser must
not pass as a skip.
"""

import pytest
from chromium import Browser, BrowserUnavailable  # pytest puts this folder on sys.path


def pytest_collection_modifyitems(items):
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def _start() -> tuple[Browser | None, str]:
    try:
        return Browser.start(), ""
    except BrowserUnavailable as e:
        return None, str(e)


@pytest.fixture(scope="session")
def browser():
    b, reason = _start()  # failing outside the except clause keeps the report to the reason
    if b is None:
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    with b:
        yield b
