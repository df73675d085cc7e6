"""The demo's overview: what it ran, on which testbed, and its headline figures (members
against non-members, and members by how often the training data repeated them). Each
audit it ran follows as a section of its own."""

from __future__ import annotations

from lmaudit.report.fmt import finite, num, rate_of
from lmaudit.report.load import Run
from lmaudit.report.page import Page
from lmaudit.report.sections import Section, sections

# What each run folder of the demo holds (cli/demo.py's RUN_DIRS), by folder name.
RUNS = {
    "members": "scoring: per-token statistics of the member documents",
    "nonmembers": "scoring: per-token statistics of the non-member documents",
    "membership": "membership attacks: every default attack, all members against all non-members, with blind baselines",
    "dataset_inference": "dataset inference: members as the suspect set against non-members as the validation set",
    "paired_members": "paired test: the members' published texts against their private rephrasings",
    "paired_nonmembers": "paired test, the control: the non-members' texts against their rephrasings (should find "
                         "nothing)",
    "extract_members": "extraction: greedy continuation of a prefix of every member",
    "extract_nonmembers": "extraction: greedy continuation of a prefix of every non-member",
    "copying_members": "copying: literal copying metrics of the members' continuations against the true text",
    "copying_nonmembers": "copying: the same for the non-members' continuations",
    "knowledge_members": "knowledge: zero-shot cloze questions on facts of member documents",
    "knowledge_nonmembers": "knowledge: the same on facts of non-member documents",
    "acr": "adversarial compression ratio: the shortest prompt that makes the model emit a text",
    "takedown": "takedown: MemFree against plain decoding, the most duplicated members protected (efficacy, utility, "
                "tokens/s)",
    "watermark_generate": "watermark: continuations of non-members generated with a watermark (selfhash)",
    "watermark_detect": "watermark detection: those generations as they are, each pasted into another document, and "
                        "those documents alone",
    "radioactivity_watermarked": "radioactivity: a copy of the model fine-tuned on watermarked text, tested open "
                                 "(predictions) and closed (generations)",
    "radioactivity_control": "radioactivity, the control: a copy fine-tuned on unwatermarked text of the same prompts "
                             "(should find nothing)",
    "attribute_members": "attribution: the members' continuations looked up in an index of the members, each against "
                         "its own document",
    "attribute_nonmembers": "attribution, the control: the non-members' continuations looked up in the same index "
                            "(their documents are not in it)",
    "dedup": "near-duplicates: each member's near-copies (MinHash-LSH, verified Jaccard) in the training stream, "
             "each member repeated as often as the model saw it",
    "consent": "consent: robots.txt verdicts per site and AI crawler on a shipped fixture of snapshots, and the share "
               "of its corpus from sites that restrict each crawler",
    "unlearn": "unlearning (--all): one method run on the testbed's forget split",
    "unlearn_eval": "unlearning evaluation (--all): the unlearned model beside the target and the retrain model",
}


def _count(rate, n):
    """Successes behind a recorded rate of n: testbed.json rounds k / n to 4 decimals, which
    gives k back exactly up to n = 10,000."""
    rate = finite(rate)
    return round(rate * n) if rate is not None and isinstance(n, int) and n > 0 else None


def _extraction(rate, n) -> str:
    k = _count(rate, n)
    return rate_of(k, n) if k is not None else "n/a"


def headline(summary: dict) -> list[dict]:
    """Rows of the headline table: each split, then the members by duplication."""
    rows = []
    for split, label in (("members", "members"), ("nonmembers", "non-members")):
        s = summary.get(split)
        if isinstance(s, dict):
            n = s.get("n_documents")
            rows.append({"label": label, "n": n, "tokens": s.get("n_tokens"), "errors": s.get("n_errors"),
                         "loss": s.get("mean_doc_loss"), "extracted": _extraction(s.get("extraction_rate"), n)})
    for copies, s in (summary.get("members_by_duplication") or {}).items():
        if isinstance(s, dict):
            rows.append({"label": f"members seen {copies}× in training", "n": s.get("n"), "tokens": None,
                         "errors": None, "loss": s.get("mean_loss"),
                         "extracted": _extraction(s.get("extraction_rate"), s.get("n"))})
    return rows


def verdict(results: dict) -> list[str]:
    """What the demo ran and its headline: members against non-members."""
    summary, files = results.get("summary") or {}, results.get("files") or {}
    testbed = (results.get("provenance") or {}).get("testbed") or {}
    on = (f"the {testbed.get('size', 'unknown-size')} testbed (seed {num(testbed.get('seed'))})" if testbed
          else "a testbed it does not name")
    m, n = summary.get("members") or {}, summary.get("nonmembers") or {}
    sentences = [f"The lmaudit demo wrote {num(len(files))} run{'s' if len(files) != 1 else ''} on {on}: "
                 f"{num(m.get('n_documents'))} members (in the model's training data) and "
                 f"{num(n.get('n_documents'))} non-members (held out). Each run follows as a section of its own."]
    if m or n:
        sentences.append(f"Members have mean document loss {num(m.get('mean_doc_loss'))} against "
                         f"{num(n.get('mean_doc_loss'))} for non-members; greedy extraction recovers "
                         f"{_extraction(m.get('extraction_rate'), m.get('n_documents'))} members and "
                         f"{_extraction(n.get('extraction_rate'), n.get('n_documents'))} non-members.")
    dup = summary.get("members_by_duplication") or {}
    if dup:
        parts = [f"{copies}×: {_extraction(s.get('extraction_rate'), s.get('n'))}" for copies, s in dup.items()
                 if isinstance(s, dict)]
        sentences.append("Extraction by how often a member was repeated in training: " + "; ".join(parts) + ".")
    g = summary.get("goldfish") or {}
    if isinstance(g.get("standard"), dict) and isinstance(g.get("goldfish"), dict):
        def extracted(model):
            e = g[model].get("extraction_top") or {}
            return rate_of(e.get("successes"), e.get("n"))
        config = g.get("config") or {}
        sentences.append(f"A goldfish model (k = {num(config.get('k'))}, h = {num(config.get('h'))}: those tokens never in "
                         f"the loss) trained beside the target reproduces {extracted('goldfish')} of the members seen "
                         f"{num(g.get('top_duplication'))}× in training, against {extracted('standard')} for the target.")
    return sentences


@sections.register("demo")
def demo(run: Run, page: Page) -> Section:
    r = run.results
    files = r.get("files") or {}
    ran = [{"name": name, "what": RUNS.get(name, "an audit this report does not describe"),
            "path": entry.get("path", "") if isinstance(entry, dict) else ""} for name, entry in files.items()]
    testbed = run.provenance.get("testbed") or {}
    return Section(
        title="lmaudit demo", verdict=verdict(r), level="info", guide="guide-worked-example",
        body=page.render("demo.html.j2", ran=ran, testbed=testbed, rows=headline(run.summary)),
    )
