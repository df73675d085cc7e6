"""Scoring: a measurement, not a verdict. How many documents were scored, their losses, and
which rows could not be scored, truncated or windowed."""

from __future__ import annotations


from lmaudit.report import plots
from lmaudit.report.fmt import finite, num, rate_of
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections


def verdict(summary: dict) -> tuple[list[str], str]:
    """The section's sentences and level: ``info``, or ``warning`` when some row (or every
    row) could not be scored, since the figures then cover only the rows that were."""
    n_rows, n_scored, n_errors = summary.get("n_rows"), summary.get("n_scored"), summary.get("n_errors")
    sentences = [f"Scored {num(n_scored)} of {num(n_rows)} documents, {num(summary.get('n_tokens'))} tokens: mean "
                 f"document loss {num(summary.get('mean_doc_loss'))}, token-weighted loss "
                 f"{num(summary.get('token_loss'))} (negative log-probability per token)."]
    if isinstance(n_errors, int) and isinstance(n_rows, int):
        sentences.append(f"Rows that could not be scored: {rate_of(n_errors, n_rows)}"
                         + ("; they come first in the table below, with the reason." if n_errors else "."))
    if isinstance(n_scored, int) and n_scored:
        sentences.append(f"Truncated to the model's context (the loss covers a prefix only): "
                         f"{rate_of(summary.get('n_truncated_rows'), n_scored)} scored documents; scored in more than "
                         f"one window: {rate_of(summary.get('n_windowed_rows'), n_scored)}.")
    level = "warning" if n_errors or not n_scored else "info"
    return sentences, level


@sections.register("score")
def score(run: Run, page: Page) -> Section:
    summary = run.summary
    sentences, level = verdict(summary)
    warnings = []
    if isinstance(summary.get("n_rows"), int) and summary["n_rows"] and not summary.get("n_scored"):
        warnings.append("No document could be scored: every figure of this run is missing (the reasons are in the "
                        "table below).")
    rows = []
    for s in run.samples:
        mean = finite(s.get("logprob_mean"))
        rows.append({"id": s.get("id"), "loss": -mean if mean is not None else None, "n_tokens": s.get("n_tokens"),
                     "n_truncated": s.get("n_truncated"), "n_windows": s.get("n_windows"), "error": s.get("error")})
    losses = [row["loss"] for row in rows if row["loss"] is not None]
    hist = plots.histograms({"documents": losses}, xlabel="mean loss per token of a document",
                            title="Per-document mean loss") if losses else None
    errors = any(row["error"] for row in rows)
    samples = page.samples(
        f"{run.name}-score", rows,
        [Column("id", "id"), Column("loss", "mean loss", "num"), Column("n_tokens", "tokens", "num"),
         Column("n_truncated", "tokens truncated", "num"), Column("n_windows", "windows", "num"),
         Column("error", "error")],
        # Error rows first (the browser sorts n/a last whichever the direction), else highest loss.
        caption="Documents, rows that could not be scored first" if errors else "Documents, highest loss first",
        sort="error" if errors else "loss")
    name = run.data_file()
    return Section(title=f"Scoring: {name}" if name else "Scoring", verdict=sentences, level=level, warnings=warnings,
                   guide="guide-score",
                   body=page.render("score.html.j2", s=summary, hist=hist, samples=samples))
