"""The small public API: every name resolves, and importing lmaudit stays cheap."""

import inspect
import subprocess
import sys

import lmaudit


def test_every_api_name_resolves():
    for name in lmaudit._API:
        assert getattr(lmaudit, name) is not None


def test_import_does_not_load_torch():
    code = "import sys, lmaudit; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_api_functions_take_options_by_keyword_only():
    # Data positionally, everything else by keyword ("positional arguments invite mistakes").
    for name, n_positional in (("run_membership", 3), ("run_dataset_inference", 3), ("run_paired_test", 3)):
        params = list(inspect.signature(getattr(lmaudit, name)).parameters.values())
        assert all(p.kind == p.KEYWORD_ONLY for p in params[n_positional:]), name
