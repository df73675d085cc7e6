"""Unlearning run (kind ``unlearn``): what was trained, with which hyperparameters, its loss
curves, and the model's fingerprint before and after. Training only: whether the model forgot
is ``lmaudit unlearn-eval``'s question."""

from __future__ import annotations

from lmaudit.report import plots
from lmaudit.report.fmt import finite, num
from lmaudit.report.load import Run
from lmaudit.report.page import Page
from lmaudit.report.sections import Section, sections

CURVES = (("forget", "forget loss"), ("retain", "retain loss"), ("total", "total loss"))


def verdict(r: dict, provenance: dict) -> tuple[list[str], str, list[str]]:
    """The sentences, the level (``info``; ``warning`` when a loss is not finite or the weights
    did not change) and the warnings."""
    u, s = r.get("unlearn") or {}, r.get("summary") or {}
    config = provenance.get("config") or {}
    curve = [p for p in u.get("loss_curve") or [] if isinstance(p, dict)]
    method, retain = s.get("method") or config.get("method"), s.get("retain_loss") or config.get("retain_loss")
    if not curve and not s:
        return ["No training was recorded."], "warning", []
    how = f"{method}" + (f" with a {retain} retain loss" if retain and retain != "none" else " (no retain loss)")
    sentences = [f"Unlearning by {how}: {num(u.get('steps'))} steps over {num(config.get('epochs'))} epoch(s) on "
                 f"{num(u.get('n_forget'))} forget documents ({num(u.get('n_retain'))} retain), learning rate "
                 f"{num(config.get('lr'))}."]
    warnings = []
    for key, name in CURVES[:2]:
        values = [p.get(key) for p in curve]
        if values:
            sentences.append(f"The {name} went from {num(values[0])} at step 1 to {num(values[-1])} at step "
                             f"{num(curve[-1].get('step'))}.")
            if any(finite(v) is None for v in values):
                warnings.append(f"The {name} was not finite at some step (NaN or infinite): the run diverged; its "
                                "model should not be used.")
    models = provenance.get("models") or {}
    before, after = (models.get("before") or {}).get("fingerprint"), (models.get("after") or {}).get("fingerprint")
    if before and after and before == after and not (models.get("after") or {}).get("whp"):
        warnings.append("The model's fingerprint did not change: training left the weights as they were.")
    sentences.append("This run only trains: whether the model forgot, and what it cost, is measured by "
                     "`lmaudit unlearn-eval` against the model retrained without the forget set.")
    return sentences, "warning" if warnings else "info", warnings


@sections.register("unlearn")
def unlearn(run: Run, page: Page) -> Section:
    r, provenance = run.results, run.provenance
    sentences, level, warnings = verdict(r, provenance)
    u = r.get("unlearn") or {}
    curve = [p for p in u.get("loss_curve") or [] if isinstance(p, dict)]
    plot = None
    if curve:
        steps = [p.get("step") for p in curve]
        series = {name: (steps, [finite(p.get(key)) for p in curve]) for key, name in CURVES
                  if any(finite(p.get(key)) is not None for p in curve)}
        if series:
            plot = plots.lines(series, xlabel="step", ylabel="loss",
                               title="Training losses per step: forget, retain and their weighted total")
    facts = [(k, u.get(k)) for k in ("steps", "steps_per_epoch", "n_forget", "n_retain", "forget_tokens", "max_length",
                                     "train_time_s", "ref_logprob_time_s", "time_per_step_s", "process_peak_rss_bytes",
                                     "peak_gpu_bytes", "device", "num_processes", "mixed_precision") if k in u]
    models = provenance.get("models") or {}
    return Section(
        title="Unlearning run", verdict=sentences, level=level, warnings=warnings, guide="guide-unlearning",
        body=page.render("unlearn.html.j2", config=provenance.get("config") or {}, facts=facts, plot=plot, curve=curve,
                         reference=u.get("reference") or {}, paper=u.get("paper") or {},
                         before=models.get("before") or {}, after=models.get("after") or {}),
    )
