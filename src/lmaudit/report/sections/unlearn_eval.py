"""Unlearning evaluation (kind ``unlearn-eval``): each candidate against the model retrained
without the forget set (does it still leak, how far is its VerbMem from the retrain model's,
how much utility it kept, TOFU's forget quality), then every criterion side by side."""

from __future__ import annotations

from lmaudit.report import plots
from lmaudit.report.fmt import ci, finite, num
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._unlearning import (LEAKS, TARGETS, candidate_sentences, criteria_rows, interval,
                                                 leak_words, signed, tofu_rows, value)

ORDER = {"target": 0, "retrain": 1}


def ordered(models: dict) -> dict:
    """Target, retrain model, then the candidates in the run's order."""
    items = [(k, v) for k, v in models.items() if isinstance(v, dict)]
    return dict(sorted(items, key=lambda kv: ORDER.get(kv[1].get("role"), 2)))


def verdict(r: dict) -> tuple[list[str], str, list[str]]:
    """The verdict sentences, their level and the section's warnings.

    Level ``evidence`` when some candidate's PrivLeak interval lies above 0 (it still leaks
    against the retrain reference); ``warning`` when the target itself shows no leak (the
    protocol then cannot tell forgetting from never having learned); else ``info``.
    """
    models = ordered(r.get("models") or {})
    target = next((row for row in models.values() if row.get("role") == "target"), None)
    candidates = {k: row for k, row in models.items() if row.get("role") == "candidate"}
    if target is None:
        return ["No models were compared: this run recorded no target or retrain model."], "warning", []
    sentences, warnings = [], []
    words, shown = leak_words(target.get("privleak"))
    gap = target.get("verbmem_forget_minus_retrain")
    sentences.append(f"Before unlearning, the target {words or 'has no PrivLeak figure'} ({shown}); its VerbMem on F "
                     f"is {signed(value(gap))} points from the retrain model's (95% CI {ci(interval(gap))}).")
    if words and words != LEAKS:
        warnings.append("The target itself shows no leak on these sets beyond the retrain model's: this evaluation "
                        "cannot tell a candidate that forgot from one that never learned (more forget documents, "
                        "or a testbed whose forget set is seen more often, would show one).")
    if not candidates:
        sentences.append("No candidate was evaluated: the target and the retrain model alone.")
    leaking = []
    for label, row in candidates.items():
        sentences += candidate_sentences(label, row, target, TARGETS)
        if leak_words(row.get("privleak"))[0] == LEAKS:
            leaking.append(label)
    if r.get("n_errors"):
        warnings.append(f"{num(r['n_errors'])} item(s) could not be measured (their error is in samples.jsonl); "
                        "each is in no figure.")
    level = "warning" if warnings and not leaking else "evidence" if leaking else "info"
    return sentences, level, warnings


def frontier_plot(models: dict):
    """Each model as a point: VerbMem on F against KnowMem on R as a share of the target's."""
    curves, reference = {}, {}
    for label, row in models.items():
        x, y = value(row.get("verbmem_forget")), value(row.get("knowmem_retain_vs_target"))
        if x is None or y is None:
            continue
        if row.get("role") == "candidate":
            curves[label] = [(x, y, label)]
        else:
            reference[label] = (x, y)
    if not curves and not reference:
        return None
    return plots.frontier(curves, reference=reference, xlabel="VerbMem on F (ROUGE-L F1 × 100; lower: more forgotten)",
                          ylabel="KnowMem on R / target's", ytarget=TARGETS["utility"],
                          title="Forgetting against utility: each candidate, the target and the retrain model")


@sections.register("unlearn-eval")
def unlearn_eval(run: Run, page: Page) -> Section:
    r = run.results
    models = ordered(r.get("models") or {})
    sentences, level, warnings = verdict(r)
    present = lambda key: any(key in x for x in run.samples)  # noqa: E731
    columns = [Column("model", "model"), Column("part", "part"), Column("set", "set"), Column("id", "id"),
               *[Column(k, name, "num") for k, name in (("verbmem", "VerbMem"), ("knowmem", "KnowMem"),
                                                        ("attack", "attack score"), ("loss", "loss"),
                                                        ("probability", "probability"),
                                                        ("rouge_l_recall", "ROUGE-L recall"),
                                                        ("truth_ratio", "truth ratio")) if present(k)],
               *([Column("exact_match", "extracted", "bool")] if present("exact_match") else []),
               *([Column("error", "error")] if present("error") else [])]
    samples = page.samples(f"{run.name}-unlearn-eval", run.samples, columns, sort=None,
                           caption="Every model's value on every document and question")
    n = r.get("n") or {}
    attack = run.provenance.get("attack")
    if isinstance(attack, dict):  # the attack's describe(): its name and parameters
        params = attack.get("params") if isinstance(attack.get("params"), dict) else {}
        attack = f"{attack.get('name')}" + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
    return Section(
        title="Unlearning evaluation", verdict=sentences, level=level, warnings=warnings, guide="guide-unlearning",
        body=page.render("unlearn-eval.html.j2", labels=list(models), roles=[m.get("role") for m in models.values()],
                         criteria=criteria_rows(models), tofu=tofu_rows(models), plot=frontier_plot(models),
                         n=n, attack=attack if isinstance(attack, str) else None,
                         subsample=r.get("knowledge_subsample") or {}, samples=samples,
                         timings={k: finite(sum(v.values())) if isinstance(v, dict) else None
                                  for k, v in (r.get("timings_s") or {}).items()}),
    )
