"""One self-contained HTML page from one or more runs: ``lmaudit report`` in Python.

The page carries everything it shows: CSS and the one script inline, plots as inline SVG,
sample rows as JSON inside the page. It loads nothing: a Content-Security-Policy allows no
network source at all and only the page's own script (by its hash), so even a text that
escaped escaping could not run or fetch anything. All HTML comes from Jinja2 templates with
autoescaping on: every text from a document, a model output, an id or a file name is data.

Long sample lists are paginated in the browser from their JSON, written into the table with
``textContent`` (never as markup); without scripts the page still shows every verdict, table
and plot, and says that the sample browser needs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

import jinja2
from markupsafe import Markup

import lmaudit
from lmaudit.report import fmt
from lmaudit.report.load import ReportError, Run, load_runs
from lmaudit.report.results import is_lmaudit_report
from lmaudit.report.run import RUN_MARK
from lmaudit.report.sections import LEVELS, Section, sections

_PACKAGE = files("lmaudit.report")


@dataclass(frozen=True)
class Column:
    """A column of a sample browser: a row field, its heading and how to show it.

    ``kind`` is text, num (sorted as numbers), pct (a 0-1 share shown as %) or bool.
    """

    key: str
    label: str
    kind: str = "text"


def json_for_script(value: Any) -> Markup:
    """JSON safe inside a ``<script type="application/json">`` element: ``<``, ``>``, ``&``
    and the JavaScript line separators escaped, so no text can close the element.

    >>> str(json_for_script({"t": "</script><b>"}))
    '{"t": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    for raw, safe in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                      ("\u2029", "\\u2029")):
        text = text.replace(raw, safe)
    return Markup(text)


def _cell(value: Any, kind: str) -> Any:
    """A value as the sample browser receives it: text as text; a number to 6 significant
    figures (it shows 4; samples.jsonl keeps every digit), which keeps a 100,000-row page
    small; NaN and infinity, which JSON cannot hold, as None (shown as n/a)."""
    if value is None:
        return None
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "text" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)  # also a number column's odd value ("32" from a user's file): shown, sorted as text
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return float(f"{value:.6g}")
    return value


class Page:
    """What a renderer may use: its templates, numbered sample browsers, the run list."""

    def __init__(self, env: jinja2.Environment):
        self.env = env
        self.tables: list[dict] = []
        self._ids: dict[str, int] = {}

    def render(self, template: str, **context: Any) -> Markup:
        """A section template (``templates/sections/<template>``) rendered, autoescaped."""
        return Markup(self.env.get_template(f"sections/{template}").render(**context))

    def anchor(self, name: str) -> str:
        """A page-unique element id derived from ``name``."""
        base = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "x"
        self._ids[base] = self._ids.get(base, 0) + 1
        return base if self._ids[base] == 1 else f"{base}-{self._ids[base]}"

    def samples(self, name: str, rows: Sequence[dict], columns: Sequence[Column], *, caption: str,
                sort: str | None = None, descending: bool = True) -> Markup:
        """A browsable, paginated table of ``rows`` (only ``columns`` travel into the page)."""
        table_id = self.anchor(f"samples-{name}")
        data = {
            "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in columns],
            "rows": [[_cell(r.get(c.key), c.kind) for c in columns] for r in rows],
            "sort": sort, "descending": descending,
        }
        self.tables.append({"id": table_id, "data": json_for_script(data)})
        return Markup(self.env.get_template("samples.html.j2").render(id=table_id, caption=caption, n=len(rows)))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lmaudit.report", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the report, never renders blank
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(fmt.FILTERS)
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    return env


def _guide_sections() -> list[dict]:
    """The guide (guide.md, shipped in the package) as HTML, raw HTML in it escaped except
    the anchors it declares."""
    from markdown_it import MarkdownIt

    text = (_PACKAGE / "guide.md").read_text(encoding="utf-8")
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    # The page gives the guide its own h2 ("How to read this report"): the guide's title goes,
    # and its headings move one level down, so the page's outline stays in order.
    if len(tokens) >= 3 and tokens[0].type == "heading_open" and tokens[0].tag == "h1":
        tokens = tokens[3:]
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    html = md.renderer.render(tokens, md.options, {})
    # The guide's anchors are written `<a id="guide-x"></a>`; with html off they arrive escaped.
    html = html.replace("&lt;a id=&quot;", '<a id="').replace("&quot;&gt;&lt;/a&gt;", '"></a>')
    return [{"html": Markup(html)}]


def render_report(runs: Sequence[Run], *, title: str = "lmaudit report", created: str | None = None) -> str:
    """The report page for ``runs`` (loaded by :func:`lmaudit.report.load.load_runs`)."""
    from lmaudit.report.sections.generic import generic

    env = _environment()
    page = Page(env)
    rendered = []
    for run in runs:
        renderer = sections.get(run.kind) if run.kind in sections else generic
        try:
            section = renderer(run, page)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            # A results.json edited or written by something else (a list where an object
            # belongs): one line naming the file, never a traceback or a half page.
            raise ReportError(f"{run.dir / 'results.json'}: the {run.kind} section cannot read it "
                              f"({type(err).__name__}: {err})") from err
        if not isinstance(section, Section):
            raise TypeError(f"the {run.kind} renderer returned {type(section).__name__}, not a Section")
        rendered.append({"run": run, "section": section, "id": page.anchor(f"run-{run.name}"),
                         "provenance": _provenance_rows(run)})
    script = (_PACKAGE / "static" / "report.js").read_text(encoding="utf-8")
    style = (_PACKAGE / "static" / "report.css").read_text(encoding="utf-8")
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return env.get_template("page.html.j2").render(
        title=title, runs=rendered, levels=LEVELS, tables=page.tables, guide=_guide_sections(),
        script=Markup(script), style=Markup(style), script_hash=script_hash,
        incomplete=[r for r in runs if r.problems],
        created=created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=lmaudit.__version__,
    )


def _provenance_rows(run: Run) -> dict:
    """The provenance a reader checks first, picked out of results.json; the rest shown whole."""
    p = run.provenance
    model = p.get("model") if isinstance(p.get("model"), dict) else {}
    data = p.get("data") if isinstance(p.get("data"), list) else []
    key = [
        ("model", model.get("name")),
        ("model fingerprint", model.get("fingerprint")),
        ("tokenizer fingerprint", model.get("tokenizer_fingerprint")),
        ("dtype / device", f"{model.get('dtype')} / {model.get('device')}" if model else None),
        # On the Ray engine the device above is the driver's copy; the workers' is this one.
        ("engine", _engine_line(model.get("engine")) if isinstance(model.get("engine"), dict) else None),
        ("scoring policy", ", ".join(f"{k}={v}" for k, v in p["policy"].items())
         if isinstance(p.get("policy"), dict) else None),
        ("lmaudit", f"{p.get('lmaudit_version')} (commit {p.get('git_commit') or 'unknown'})"),
        ("command", run.results.get("command")),
        ("created", run.results.get("created")),
        ("wall time", f"{fmt.num(run.results.get('wall_time_s'))} s" if run.results.get("wall_time_s") is not None
         else None),
        ("python / platform", f"{p.get('python')} / {p.get('platform')}" if p.get("python") else None),
    ]
    # Readers record a file's rows as n_rows (cli/loading.py); rows is accepted too.
    files = [{"role": d.get("role", ""), "path": d.get("path", ""), "rows": d.get("n_rows", d.get("rows")),
              "bytes": d.get("bytes"), "sha256": d.get("sha256", "")} for d in data if isinstance(d, dict)]
    return {"key": [(k, v) for k, v in key if v is not None], "data": files,
            "libraries": p.get("libraries") or {}, "files": run.results.get("files") or {}, "all": p}


def _engine_line(engine: dict) -> str:
    """'ray: 2 workers on cuda (ray 2.60.0, 10.0.0.1:6379)' from a run's engine provenance.

    >>> _engine_line({"name": "ray", "workers": 2, "device": "cpu", "ray_version": "2.60.0", "address": "local instance"})
    'ray: 2 workers on cpu (ray 2.60.0, local instance)'
    """
    where = ", ".join(str(engine[k]) for k in ("ray_version", "address") if engine.get(k))
    workers = f"{engine['workers']} workers on {engine.get('device', '?')}" if engine.get("workers") else ""
    return f"{engine.get('name', '?')}: {workers}" + (f" ({'ray ' if engine.get('ray_version') else ''}{where})"
                                                       if where else "")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

def write_report(folders: Sequence[str | os.PathLike], out: str | os.PathLike, *, title: str | None = None,
                 allow_incomplete: bool = False) -> dict:
    """Load the runs in ``folders`` and write their report to ``out`` (atomically).

    Returns:
        ``path``, ``bytes``, ``runs`` (how many), ``incomplete`` (how many shown under the
        banner) and ``seconds``.

    Raises:
        lmaudit.report.load.ReportError: a folder holds no run, a file is missing or changed,
            (unless ``allow_incomplete``) a run is not complete, or ``out`` is one of a run's files.
    """
    started = time.time()
    runs = load_runs(folders, allow_incomplete=allow_incomplete)
    out = Path(out)
    for run in runs:
        files = [f.get("path") for f in (run.results.get("files") or {}).values() if isinstance(f, dict)]
        if out.resolve() in {(run.dir / name).resolve() for name in ["results.json", RUN_MARK, *files] if name}:
            raise ReportError(f"--out {out} is a file of the run in {run.dir}: the report would replace it")
        # In a run's folder, only a report lmaudit wrote may be replaced (not its cache, not
        # the files of a run that died, not a file of the user's).
        if out.resolve().parent == run.dir.resolve() and (out.exists() or out.is_symlink()) \
                and not is_lmaudit_report(out):
            raise ReportError(f"--out {out} is a file in the run folder {run.dir} that is not a report lmaudit "
                              "wrote: the report would replace it")
    # A lone surrogate (a "\ud800" escape in some input, kept as is by the runs) cannot be
    # written as UTF-8: the page shows U+FFFD in its place, as a browser does for bad bytes.
    html = _LONE_SURROGATE.sub("\ufffd", render_report(runs, title=title or _default_title(runs)))
    out.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of our own (never a fixed name a user's file could have), renamed into place.
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "bytes": out.stat().st_size, "runs": len(runs),
            "incomplete": sum(1 for r in runs if r.problems), "seconds": round(time.time() - started, 3)}


def _default_title(runs: Sequence[Run]) -> str:
    if runs and runs[0].kind == "demo":
        return "lmaudit demo report"
    kinds = sorted({r.kind for r in runs})
    return "lmaudit report: " + ", ".join(kinds)
