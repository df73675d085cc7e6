"""Paired tests (STAMP): both tests with their directions, the effect size, and the per-item
loss differences, private minus public."""

from __future__ import annotations


from lmaudit.report import plots
from lmaudit.report.fmt import finite, num, pval, rate_of
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections

# A paired-test run fixes no level of its own: the report judges it at the conventional 0.05,
# and says so in the verdict.
ALPHA = 0.05
STRONG_FACTOR = 100  # "strong" needs both p-values at most α / 100


def verdict(r: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level.

    Levels: ``strong`` when both tests reject at α / STRONG_FACTOR; ``evidence`` when both
    reject at α; ``weak`` when neither does, or only one (the t-test leans on normal
    differences, the Wilcoxon test does not: a split decision is no finding); ``warning``
    when neither test has a p-value.
    """
    t, w = r.get("paired_t") or {}, r.get("wilcoxon") or {}
    pt, pw = finite(t.get("p_value")), finite(w.get("p_value"))
    n, k = r.get("n_items"), r.get("n_private_versions")
    d_z = (r.get("effect_size") or {}).get("d_z")
    versions = f", {num(k)} private version{'s' if k != 1 else ''} each" if isinstance(k, int) else ""
    figures = (f"{num(n)} items{versions}; mean loss difference (private − public) {num(r.get('mean_difference'))} "
               f"per token, effect size d_z = {num(d_z)}")
    tests = (f"One-sided paired t-test ({t.get('alternative', 'public loss < mean private loss')}): "
             f"t = {num(t.get('statistic'))}, df = {num(t.get('df'))}, p = {pval(t.get('p_value'))}; Wilcoxon "
             f"signed-rank test ({w.get('alternative', 'differences above 0')}): p = {pval(w.get('p_value'))}.")
    rejects = {name: p is not None and p < ALPHA for name, p in (("the paired t-test", pt), ("the Wilcoxon test", pw))}
    if pt is None and pw is None:
        return [f"Paired test: neither test has a p-value ({figures}): with every difference equal, or too few "
                "items, there is nothing to test.", tests], "warning"
    if all(rejects.values()):
        strong = max(pt, pw) <= ALPHA / STRONG_FACTOR
        level = "strong" if strong else "evidence"
        sentences = [f"Paired test: {'strong evidence' if strong else 'evidence'} that the model was trained on the "
                     f"published versions: it gives them a lower loss than their private rephrasings, which it cannot "
                     f"have seen ({figures}).", tests,
                     "This holds if the private versions were never published and read as naturally as the published "
                     "one: a rephrasing that reads worse has a higher loss whatever the model trained on."]
    elif any(rejects.values()):
        level = "weak"
        yes = next(name for name, v in rejects.items() if v)
        no = next(name for name, v in rejects.items() if not v)
        sentences = [f"Paired test: weak evidence at α = {num(ALPHA)}: {yes} rejects but {no} does not ({figures}), "
                     "so the result rests on the test's assumptions (the t-test on normal differences, which a few "
                     "outlying items can break).", tests]
    else:
        level = "weak"
        sentences = [f"Paired test: no evidence at α = {num(ALPHA)} that the model was trained on the published "
                     f"versions ({figures}). This does not show that it was not: a text seen rarely can leave too "
                     "small a trace for this many items.", tests]
    zeros = r.get("n_zero_differences")
    if isinstance(zeros, int) and zeros and isinstance(n, int):
        sentences.append(f"{rate_of(zeros, n)} items have equal public and private losses; the Wilcoxon test counts "
                         "them half on each side.")
    return sentences, level


@sections.register("paired-test")
def paired(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r)
    rows = []
    for s in run.samples:
        private = [finite(v) for v in s.get("loss_private") or []]
        ok = [v for v in private if v is not None]
        rows.append({"id": s.get("id"), "public": s.get("loss_public"),
                     "private": sum(ok) / len(ok) if ok and len(ok) == len(private) else None,
                     "difference": s.get("difference")})
    differences = [finite(row["difference"]) for row in rows]
    hist = None
    if any(d is not None for d in differences):
        hist = plots.histograms({"items": differences}, xlabel="loss difference, private − public (per token)",
                                vline=(0.0, "no difference"),
                                title="Per-item loss differences; right of 0, the published version is favoured")
    samples = page.samples(
        f"{run.name}-paired", rows,
        [Column("id", "id"), Column("public", "loss, public", "num"),
         Column("private", "mean loss, private", "num"),
         Column("difference", "difference (private − public)", "num")],
        caption="Items, most favoured published version first", sort="difference")
    public = run.data_file("public")
    return Section(
        title=f"Paired test: {public}" if public else "Paired test", verdict=sentences, level=level,
        guide="guide-paired-test",
        body=page.render("paired-test.html.j2", r=r, t=r.get("paired_t") or {}, w=r.get("wilcoxon") or {},
                         hist=hist, alpha=ALPHA, samples=samples),
    )
