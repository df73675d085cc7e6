"""Provenance records the commit lmaudit was installed from (PEP 610), never another project's HEAD."""

import json
import subprocess

import pytest

import lmaudit
from lmaudit.report import results


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.strip()


def _repo(path, *files):
    """A git repository at ``path`` with ``files`` committed; returns its HEAD."""
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q")
    for f in files:
        (path / f).parent.mkdir(parents=True, exist_ok=True)
        (path / f).write_text("# x\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "init")
    return _git(path, "rev-parse", "HEAD")


class _Dist:
    def __init__(self, direct_url):
        self.direct_url = direct_url

    def read_text(self, name):
        assert name == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


def _installed(monkeypatch, package_file, direct_url):
    monkeypatch.setattr(lmaudit, "__file__", str(package_file))
    monkeypatch.setattr(results, "distribution", lambda name: _Dist(direct_url), raising=False)


SITE = ".venv/lib/python3.11/site-packages/lmaudit/__init__.py"


def test_a_venv_inside_a_users_project_records_no_commit(tmp_path, monkeypatch):
    _repo(tmp_path / "project", "data.txt", SITE)  # the user's project, venv and all under git
    _installed(monkeypatch, tmp_path / "project" / SITE, None)  # from an index: no direct_url.json
    assert results._git_commit() is None


def test_an_install_from_the_users_own_folder_records_no_commit(tmp_path, monkeypatch):
    _repo(tmp_path / "project", "data.txt", SITE)
    _installed(monkeypatch, tmp_path / "project" / SITE,
               {"url": (tmp_path / "other").as_uri(), "dir_info": {}})  # the package is not from there
    assert results._git_commit() is None


def test_a_vcs_install_records_its_commit_id(tmp_path, monkeypatch):
    _repo(tmp_path / "project", SITE)
    commit = "0123456789abcdef0123456789abcdef01234567"
    _installed(monkeypatch, tmp_path / "project" / SITE,
               {"url": "https://github.com/x/lmaudit.git", "vcs_info": {"vcs": "git", "commit_id": commit}})
    assert results._git_commit() == commit


def test_an_editable_install_records_its_source_trees_head(tmp_path, monkeypatch):
    head = _repo(tmp_path / "lmaudit", "src/lmaudit/__init__.py")
    _installed(monkeypatch, tmp_path / "lmaudit" / "src" / "lmaudit" / "__init__.py",
               {"url": (tmp_path / "lmaudit").as_uri(), "dir_info": {"editable": True}})
    assert results._git_commit() == head
    (tmp_path / "lmaudit" / "src" / "lmaudit" / "__init__.py").write_text("# changed\n")
    assert results._git_commit() == head + "+dirty"


def test_a_copy_installed_from_a_source_folder_records_no_commit(tmp_path, monkeypatch):
    """pip install ./lmaudit (not editable) into a venv inside that source tree: the tree's HEAD
    may move on after the install, while the installed copy stays what it was."""
    _repo(tmp_path / "lmaudit", "src/lmaudit/__init__.py", SITE)
    _installed(monkeypatch, tmp_path / "lmaudit" / SITE, {"url": (tmp_path / "lmaudit").as_uri(), "dir_info": {}})
    assert results._git_commit() is None


@pytest.mark.parametrize("where", ["inside another repository", "not a repository"])
def test_a_source_folder_that_is_not_its_own_repository_records_no_commit(tmp_path, monkeypatch, where):
    if where == "inside another repository":
        _repo(tmp_path, "vendor/lmaudit/src/lmaudit/__init__.py")  # another project's HEAD
    else:
        (tmp_path / "vendor/lmaudit/src/lmaudit").mkdir(parents=True)
    _installed(monkeypatch, tmp_path / "vendor/lmaudit/src/lmaudit/__init__.py",
               {"url": (tmp_path / "vendor" / "lmaudit").as_uri(), "dir_info": {"editable": True}})
    assert results._git_commit() is None
