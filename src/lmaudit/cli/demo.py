"""``lmaudit demo``: build (or reuse) the default testbed and run every audit on it.

Audits, all on the testbed whose ground truth is known:
  scoring            per-token statistics of members and non-members
  membership         every default attack on all members vs all non-members, with blind baselines
  dataset inference  the first DI_SUSPECT members as the suspect set vs DI_SUSPECT non-members
  paired test        members' published text vs their private rephrasings, and the same for
                     non-members (the control: it should find nothing)
  extraction         greedy 32 -> 32 token continuation of every member and non-member
  copying            the literal copying metrics of those continuations against the true text
  knowledge          zero-shot cloze questions about the facts of KNOWLEDGE_DOCS members and
                     as many non-members
  ACR                the shortest prompt for ACR_TARGETS extracted members and as many
                     non-members, on a CPU-sized GCG budget (ACR_CONFIG)
  takedown           MemFree against plain decoding (takedown-eval), the most duplicated members
                     protected: efficacy on them, utility on TAKEDOWN_UNPROTECTED other members and
                     on the questions of TAKEDOWN_KNOWLEDGE_DOCS documents of each, tokens/s
  watermark          a round trip (WATERMARK: continuations of non-members watermarked, then
                     detected as they are, pasted into another document, and beside unwatermarked
                     documents), and radioactivity: two copies of the target fine-tuned on
                     watermarked and on unwatermarked continuations (<testbed>/radioactive,
                     made once), each tested open and closed with the null-key calibration
  corpus             an exact-substring index of the members (<testbed>/index), and the
                     extraction continuations attributed to it (CORPUS): members' against their own
                     document, non-members' as the control; each member's near-copies in the
                     training stream (MinHash-LSH, to compare with its true duplication); and the
                     consent audit of a fixture
                     of robots.txt snapshots (<testbed>/consent) and the corpus collected from them

With --all, also what does not fit the plain demo's 10 minutes on 2 cores:
  unlearning         a forget split of DEMO_FORGET[size] members (the testbed gains a retrain model
                     trained without them: a second training run), DEMO_UNLEARN on it, and the
                     unlearned model judged beside the target and the retrain model (unlearn-eval)
  goldfish           a goldfish model (DEMO_GOLDFISH: k, h) trained beside the target (a third
                     training run), both measured side by side in testbed.json
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer
from rich.table import Table

from lmaudit.cli.common import (command_line, console, fail, pass_bars, progress_bar, say, state, step_bar,
                                write_run_report)
from lmaudit.cli.dataset_inference import show_dataset_inference
from lmaudit.cli.membership import show_membership
from lmaudit.cli.options import option_groups
from lmaudit.report.results import REPORT_FILE, is_lmaudit_report
from lmaudit.report.run import RUN_MARK

EXAMPLE = "Example: lmaudit demo --out lmaudit-demo"
DI_SUSPECT = 100  # documents per side in the dataset-inference demo (the issue's target setting)
DI_NULL_TRIALS = 200
PAIRED_ITEMS = 200
KNOWLEDGE_DOCS = 200  # 9 questions each
ACR_TARGETS = 3
# GCG sized for 2 CPU cores (about 40 s a target on the default testbed); the paper's own
# budget (200 steps, 100 candidates, top-k 250) is lmaudit acr's default. The budget is in
# steps, so the result does not depend on the machine's load; max_seconds is only a safety
# net, and a target it stops without a verdict is reported inconclusive.
ACR_CONFIG = dict(steps=100, n_candidates=50, top_k=128, patience=25, max_seconds=600)
# The takedown step: MemFree against plain decoding, protecting the most duplicated members.
TAKEDOWN = dict(methods="none,memfree", max_unprotected=200, knowledge_docs=50, timing_prompts=128, timing_repeats=3)
# The watermark step (issue 15). The key is lm-watermarking's public default hash key: a demo
# needs a fixed one; a real data owner draws a random 64-bit key and keeps it secret.
WATERMARK = dict(key=15485863, preset="selfhash", max_new_tokens=128, null_keys=1000)
# The corpus step (issue 16): spans of at least this many bytes count (OLMoTrace-like; about 6 words).
CORPUS = dict(min_bytes=32)
# The consent audit of the shipped fixture (lmaudit/corpus/fixtures/consent): the date the
# verdicts are given for (one site changed its robots.txt after it), and the agents printed.
CONSENT = dict(as_of="2024-06-01", shown=("GPTBot", "CCBot"))
# Per testbed size: documents of the round trip (and as many human texts; the last non-members),
# and texts of the radioactivity pair (the first non-members).
WATERMARK_DOCS = {"default": (100, 400), "tiny": (16, 32)}
# The forget set of --all, per testbed size (the default's is issue 13's setting).
DEMO_FORGET = {"default": 100, "tiny": 8}
# The unlearning run of --all: the method and setting unlearn-bench ranked best on the default
# testbed with --forget 100 (benchmarks/README.md, "Unlearning").
DEMO_UNLEARN = dict(method="npo", retain_loss="kl", lr=3e-4, epochs=4, batch_size=8)
# The goldfish model of --all: the paper's setting, k = 4, h = 13 (benchmarks/README.md, "Goldfish loss").
DEMO_GOLDFISH = (4, 13)


# For --quiet; the demo replaces only its own results, and always writes its report.
@option_groups(omit=("overwrite", "report"))
def demo(
    out: Path = typer.Option(Path("lmaudit-demo"), "--out", "-o", help="Directory for the testbed and the results."),
    seed: int = typer.Option(0, help="Testbed seed."),
    size: str = typer.Option("default", help="Testbed size: default or tiny."),
    batch_size: int = typer.Option(32, min=1, help="Sequences per forward pass."),
    all_: bool = typer.Option(False, "--all", help=f"Also unlearning: a forget split of {DEMO_FORGET['default']} members with a "
                                                   "retrain model (a second training run of the testbed model), one unlearning method, "
                                                   "and its evaluation against the retrain model; and a goldfish model (k=4, h=13) trained beside the "
                                                   "target, both measured side by side."),
) -> None:
    """Build the testbed if needed; score it, run membership attacks, dataset inference and paired tests."""
    from lmaudit.data import data_fingerprint
    from lmaudit.models.hf import HFModel
    from lmaudit.report.results import file_entry, model_provenance
    from lmaudit.report.run import RunWriter
    from lmaudit.scoring.run import score_to_dir
    from lmaudit.testbed.build import SIZES, build_testbed, load_complete
    from lmaudit.testbed.load import load_splits
    from lmaudit.testbed.folder import NotATestbedError, check_buildable

    if size not in SIZES:
        fail(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    try:
        check_buildable(out)  # before anything in it is touched
    except NotATestbedError as err:
        fail(str(err))
    user_report = out / "results" / REPORT_FILE
    if (user_report.exists() or user_report.is_symlink()) and not is_lmaudit_report(user_report):
        fail(f"{user_report} is not a report lmaudit wrote, and the demo writes its report there: move it")
    started = time.time()
    # Until this run finishes, nothing in results/ may claim to be a complete result.
    (out / "results" / "results.json").unlink(missing_ok=True)
    if is_lmaudit_report(out / "results" / REPORT_FILE):
        (out / "results" / REPORT_FILE).unlink()  # it showed the earlier results
    forget = DEMO_FORGET[size] if all_ else None
    goldfish = DEMO_GOLDFISH if all_ else None
    info = load_complete(out, seed=seed, size=size, forget=forget, goldfish=goldfish)
    lm = _load_matching(out, info) if info else None
    if lm is None:
        # --all on a finished plain testbed adds the forget split and the goldfish model and keeps
        # the target (and the results of the audits on it); anything else is built from scratch.
        plain = load_complete(out, seed=seed, size=size) if all_ else None
        keep = plain is not None and _load_matching(out, plain) is not None
        if info:
            say("the saved model or tokenizer does not match testbed.json; rebuilding")
        if keep:
            say(f"adding a forget split of {forget} members and a goldfish model to the testbed in {out} "
                "(its model is kept)")
        else:
            extra = " with a forget split and a goldfish model" if all_ else ""
            say(f"building the {size} testbed in {out} (seed {seed}){extra}")
            _remove_results(out / "results")  # results of another testbed
        with step_bar("training") as on_step:
            info = build_testbed(out, seed=seed, size=size, forget=forget, goldfish=goldfish, log=say, on_step=on_step)
        lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    else:
        say(f"reusing the complete testbed in {out}")

    # results/results.json, written last, lists every audit's own results.json.
    with RunWriter(out / "results", kind="demo", command=command_line(), started=started) as run:
        members, nonmembers = load_splits(out)
        runs = {}
        for name, records in (("members", members), ("nonmembers", nonmembers)):
            with progress_bar(f"scoring {name}", len(records)) as advance:
                runs[name] = score_to_dir(
                    lm, records, out / "results" / name, batch_size=batch_size,
                    cache_path=out / "results" / "cache.sqlite", command=command_line(), seed=seed, progress=advance,
                    data=[{**data_fingerprint(out / "data" / f"{name}.jsonl"), "n_rows": len(records)}],
                )

        audits = _run_audits(lm, out, members, nonmembers, seed=seed, batch_size=batch_size)
        memorization = _run_memorization(lm, out, members, nonmembers, seed=seed, batch_size=batch_size)
        takedown = _run_takedown(lm, out, members, seed=seed, batch_size=batch_size)
        watermark = _run_watermark(lm, out, nonmembers, size=size, seed=seed, batch_size=batch_size)
        corpus = _run_corpus(out, seed=seed)
        unlearning = _run_unlearning(lm, out, seed=seed, batch_size=batch_size) if all_ else None

        measured = info["measured"]
        summary = {
            split: {
                "n_documents": runs[split]["summary"]["n_rows"],
                "n_errors": runs[split]["summary"]["n_errors"],
                "n_tokens": runs[split]["summary"]["n_tokens"],
                "mean_doc_loss": runs[split]["summary"]["mean_doc_loss"],
                "extraction_rate": measured[split]["extraction_rate"],
            }
            for split in ("members", "nonmembers")
        }
        summary["members_by_duplication"] = measured["members_by_duplication"]
        summary.update(audits["summary"])
        summary.update(memorization["summary"])
        summary["takedown"] = takedown["summary"]
        summary["watermark"] = watermark["summary"]
        summary["corpus"] = corpus["summary"]
        summary["unlearning"] = unlearning["summary"] if unlearning else {"left_out": LEFT_OUT}
        summary["goldfish"] = _goldfish_summary(info["goldfish"]) if all_ else {"left_out": LEFT_OUT}
        for name in [*runs, *audits["dirs"], *memorization["dirs"], *takedown["dirs"], *watermark["dirs"], *corpus["dirs"],
                     *(unlearning["dirs"] if unlearning else [])]:
            run.add_file(name, out / "results" / name / "results.json", rows=1)
        results = run.finish(
            summary=summary,
            provenance={
                "model": model_provenance(lm),
                "policy": runs["members"]["provenance"]["policy"],
                "data": [d for name in runs for d in runs[name]["provenance"]["data"]],
                "testbed": {"seed": seed, "size": size, **file_entry(out / "testbed.json", rows=1, relative_to=out)},
                "seed": seed,
                "batch_size": batch_size,
            },
        )
    if not state.quiet:
        table = Table(title=f"lmaudit demo: {info['n_members']} members vs {info['n_nonmembers']} non-members")
        for col in ("split", "documents", "tokens", "mean loss", f"extracted ({measured['extraction_test']['prefix_tokens']}→{measured['extraction_test']['continuation_tokens']} greedy)"):
            table.add_column(col, justify="right" if col != "split" else "left")
        for split in ("members", "nonmembers"):
            s = summary[split]
            table.add_row(split, str(s["n_documents"]), str(s["n_tokens"]), f"{s['mean_doc_loss']:.3f}", f"{s['extraction_rate']:.1%}")
        for copies, s in measured["members_by_duplication"].items():
            table.add_row(f"  members seen {copies}x", str(s["n"]), "", f"{s['mean_loss']:.3f}", f"{s['extraction_rate']:.1%}")
        console.print(table)
        show_membership(audits["membership"], title="membership attacks: all members vs all non-members")
        show_dataset_inference(audits["dataset_inference"])
        for name in ("members", "nonmembers"):
            p = audits["paired"][name]
            say(f"paired test, {name} (published text vs {p['n_private_versions']} private rephrasings, "
                f"{p['n_items']} items): loss difference {p['mean_difference']:+.3f}, paired t p = {p['paired_t']['p_value']:.2g}, "
                f"Wilcoxon p = {p['wilcoxon']['p_value']:.2g}")
        _show_memorization(memorization["summary"])
        say(f"takedown (protected: the {takedown['summary']['n_protected_documents']} members seen "
            f"{takedown['summary']['protected_duplication']}x): {takedown['summary']['headline']}")
        _show_watermark(watermark["summary"])
        _show_corpus(corpus["summary"])
        if unlearning:
            _show_unlearning(unlearning["summary"])
        if all_:
            _show_goldfish(summary["goldfish"])
    elif audits["membership"]["distribution_shift_flag"]:
        show_membership(audits["membership"])
    if not all_:
        say(f"left out: {LEFT_OUT}")
    say(f"results: {out / 'results' / 'results.json'} (per-document rows in {out / 'results'}/*/samples.jsonl)")
    report = write_run_report(out / "results")
    if state.quiet:
        typer.echo(json.dumps({**results["summary"], "report": report}))


def _run_audits(lm, out: Path, members, nonmembers, *, seed: int, batch_size: int) -> dict:
    """Membership, dataset inference and paired tests on the testbed; returns their results."""
    from lmaudit.data import data_fingerprint, read_records
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, dataset_inference_to_dir
    from lmaudit.membership.paired import paired_test_to_dir
    from lmaudit.membership.run import MembershipConfig, membership_to_dir
    from lmaudit.testbed.load import load_variants

    res, cache = out / "results", out / "results" / "cache.sqlite"
    data = lambda name: {**data_fingerprint(out / "data" / f"{name}.jsonl")}  # noqa: E731
    corpus = read_records(out / "data" / "reference.jsonl")
    with pass_bars() as on_pass:
        membership = membership_to_dir(
            lm, members, nonmembers, res / "membership", config=MembershipConfig(seed=seed), reference_corpus=corpus,
            batch_size=batch_size, on_pass=on_pass, cache_path=cache, command=command_line(),
            data=[{**data("members"), "role": "members"}, {**data("nonmembers"), "role": "nonmembers"},
                  {**data("reference"), "role": "reference corpus"}])
        di = dataset_inference_to_dir(
            lm, members[:DI_SUSPECT], nonmembers[:DI_SUSPECT], res / "dataset_inference",
            config=DatasetInferenceConfig(null_trials=DI_NULL_TRIALS, seed=seed), reference_corpus=corpus,
            # The other non-members let the null calibration check the test at the size it is
            # reported at (100 vs 100); they are scored already, so this costs no model pass.
            null_pool=nonmembers[DI_SUSPECT:],
            batch_size=batch_size, on_pass=on_pass, cache_path=cache, command=command_line(),
            data=[{**data("members"), "role": "suspect", "rows": f"first {DI_SUSPECT}"},
                  {**data("nonmembers"), "role": "validation", "rows": f"first {DI_SUSPECT}"},
                  {**data("nonmembers"), "role": "null pool", "rows": f"all but the first {DI_SUSPECT}"}])
    variants = load_variants(out)
    paired = {}
    for name, public in (("members", members), ("nonmembers", nonmembers)):
        private = [v[:PAIRED_ITEMS] for v in variants[name]]
        with progress_bar(f"paired test, {name}", PAIRED_ITEMS * (1 + len(private))) as advance:
            paired[name] = paired_test_to_dir(
                lm, public[:PAIRED_ITEMS], private, res / f"paired_{name}", batch_size=batch_size, progress=advance,
                cache_path=cache, command=command_line(),
                data=[{**data(name), "role": "public", "rows": f"first {PAIRED_ITEMS}"}]
                + [{**data_fingerprint(v[0].source), "role": "private"} for v in private])
    best = membership["summary"]["best_attack"]
    summary = {
        "membership": {"best_attack": best, "loss_auc": membership["attacks"]["loss"]["auc"],
                       "distribution_shift_flag": membership["distribution_shift_flag"]},
        "dataset_inference": {"p_value": di["p_value"], "n_suspect": di["n_suspect"], "n_validation": di["n_validation"],
                              "null_false_positive_rate": di["null_calibration"]["false_positive_rate"]},
        "paired_test": {name: {"p_value": p["p_value"], "wilcoxon_p_value": p["wilcoxon"]["p_value"],
                               "n_items": p["n_items"]} for name, p in paired.items()},
    }
    dirs = ["membership", "dataset_inference", "paired_members", "paired_nonmembers"]
    return {"membership": membership, "dataset_inference": di, "paired": paired, "summary": summary, "dirs": dirs}


def _run_memorization(lm, out: Path, members, nonmembers, *, seed: int, batch_size: int) -> dict:
    """Extraction, copying metrics on the extractions, knowledge QA and ACR; returns their results."""
    from lmaudit.data import Record, data_fingerprint
    from lmaudit.memorization.acr import ACRConfig, acr_to_dir, continuation_targets
    from lmaudit.memorization.copying_run import copying_to_dir
    from lmaudit.memorization.extraction import ExtractionConfig, extraction_to_dir
    from lmaudit.memorization.knowledge import KnowledgeConfig, knowledge_to_dir
    from lmaudit.testbed.load import load_knowledge

    res = out / "results"
    data = lambda name, **kw: {**data_fingerprint(out / "data" / f"{name}.jsonl"), **kw}  # noqa: E731
    splits = {"members": members, "nonmembers": nonmembers}
    extraction, copying, knowledge = {}, {}, {}
    for name, records in splits.items():
        with progress_bar(f"extracting {name}", len(records)) as advance:
            extraction[name] = extraction_to_dir(lm, records, res / f"extract_{name}", config=ExtractionConfig(seed=seed),
                                                 batch_size=batch_size, data=[data(name, role="documents")],
                                                 command=command_line(), progress=advance)
        # Line numbers of samples.jsonl, counted before rows without a continuation are set aside.
        rows = [(i + 1, r) for i, r in enumerate(_rows(res / f"extract_{name}")) if "generated" in r]
        source = str(res / f"extract_{name}" / "samples.jsonl")
        outputs = [Record(id=r["id"], text=r["generated"], source=source, line=line) for line, r in rows]
        # The duplication level travels with the reference: copying breaks its rates down by it.
        truths = [Record(id=r["id"], text=r["target"], source=source, line=line,
                         meta={k: r[k] for k in ("duplication",) if k in r}) for line, r in rows]
        copying[name] = copying_to_dir(outputs, truths, res / f"copying_{name}", command=command_line(),
                                       data=[{"path": source, "role": "outputs (generated) and references (target)"}])
    questions = load_knowledge(out)
    for name in splits:
        docs = {r.id for r in splits[name][:KNOWLEDGE_DOCS]}
        items = [q for q in questions[name] if q.meta["doc_id"] in docs]
        with progress_bar(f"knowledge QA, {name}", len(items)) as advance:
            knowledge[name] = knowledge_to_dir(
                lm, items, res / f"knowledge_{name}", shots=questions["shots"],
                config=KnowledgeConfig(template="cloze", n_shots=0, max_new_tokens=12, seed=seed), batch_size=batch_size,
                data=[{**data_fingerprint(out / "data" / "knowledge" / f"{name}.jsonl"), "role": "questions",
                       "rows": f"those of the first {KNOWLEDGE_DOCS} documents"}],
                command=command_line(), progress=advance)
    hits = {x["id"] for x in _rows(res / "extract_members") if x.get("exact_match")}
    extracted = [r for r in members if r.id in hits]
    targets = (continuation_targets(lm, extracted, n=ACR_TARGETS, group="member", seed=seed)
               + continuation_targets(lm, nonmembers, n=ACR_TARGETS, group="nonmember", seed=seed + 1))
    with progress_bar("ACR (GCG prompt search)", len(targets)) as advance:
        acr = acr_to_dir(lm, targets, res / "acr", config=ACRConfig(**ACR_CONFIG, seed=seed), command=command_line(),
                         data=[data("members", role="targets: extracted continuations"),
                               data("nonmembers", role="targets: continuations")], progress=advance)
    pick = lambda r, keys: {k: r[k] for k in keys}  # noqa: E731
    summary = {
        "extraction": {n: pick(r, ("n", "exact_match_rate", "token_match_mean")) for n, r in extraction.items()},
        "copying": {n: {"n_pairs": r["n_pairs"], "literal_copy_rate": r["literal_copy_rate"],
                        "rouge_l_f1": r["means"]["rouge_l_f1"], "lcs_words": r["means"]["lcs_words"]}
                    for n, r in copying.items()},
        "knowledge": {n: {**pick(r, ("n", "exact_match_rate", "rouge_l_f1_mean")),
                          **({"by_duplication": {k: v["exact_match_rate"] for k, v in r["by_duplication"].items()}}
                             if "by_duplication" in r else {})} for n, r in knowledge.items()},
        "acr": {g: pick(v, ("n", "memorized_rate", "n_inconclusive", "n_success", "acr_median"))
                for g, v in acr["by_group"].items()}
               | {"seconds": acr["compute"]["seconds"]},
    }
    dirs = [f"{kind}_{n}" for kind in ("extract", "copying", "knowledge") for n in splits] + ["acr"]
    return {"summary": summary, "dirs": dirs}


LEFT_OUT = ("unlearning and the goldfish loss (they train a second and a third model, the retrain reference and "
            "the goldfish model, which do not fit the plain demo's 10 minutes on 2 cores): run `lmaudit demo --all`")


def _goldfish_summary(record: dict) -> dict:
    """The goldfish model beside the standard one, from testbed.json's ``goldfish``."""
    m = record["measured"]
    top = max(m["standard"]["members_by_duplication"], key=int)
    side = {}
    for model in ("standard", "goldfish"):
        x = m[model]
        level = x["members_by_duplication"][top]
        side[model] = {"extraction_top": {**level["extraction"], "n": level["n"]},
                       "rouge_l_top": x["members_by_duplication"][top]["rouge_l_f1_mean"],
                       "loss_kept": {s: x[s]["mean_loss_kept"] for s in ("members", "nonmembers")},
                       "loss_attack_auc": x["loss_attack"]["auc"]}
    return {"config": record["config"], "top_duplication": int(top), **side}


def _show_goldfish(s: dict) -> None:
    st, gf = s["standard"], s["goldfish"]
    ex = lambda e: f"{e['successes']}/{e['n']} ({e['rate']:.1%}, 95% CI {e['ci'][0]:.1%}-{e['ci'][1]:.1%})"  # noqa: E731
    say(f"goldfish loss (k={s['config']['k']}, h={s['config']['h']}) against the standard model: exact extraction of "
        f"the {s['top_duplication']}x members {ex(st['extraction_top'])} -> {ex(gf['extraction_top'])}; ROUGE-L "
        f"{st['rouge_l_top']:.3f} -> {gf['rouge_l_top']:.3f}; kept-token loss members/non-members "
        f"{st['loss_kept']['members']:.3f}/{st['loss_kept']['nonmembers']:.3f} -> "
        f"{gf['loss_kept']['members']:.3f}/{gf['loss_kept']['nonmembers']:.3f}; loss-attack AUC "
        f"{st['loss_attack_auc']:.3f} -> {gf['loss_attack_auc']:.3f}")


def _run_unlearning(lm, out: Path, *, seed: int, batch_size: int) -> dict:
    """DEMO_UNLEARN on the testbed's forget split, then the unlearned model judged beside the
    target and the retrain model; returns their results."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmaudit.models.hf import HFModel
    from lmaudit.unlearning.evaluate import unlearn_eval_to_dir
    from lmaudit.unlearning.measure import EvalConfig
    from lmaudit.unlearning.sets import TESTBED_LAYOUT, sets_of_testbed
    from lmaudit.unlearning.train import UnlearnConfig, unlearn_to_dir

    res = out / "results"
    sets = sets_of_testbed(out)
    config = UnlearnConfig(**DEMO_UNLEARN, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(out / TESTBED_LAYOUT["target"])
    tokenizer = AutoTokenizer.from_pretrained(out / TESTBED_LAYOUT["target"])
    with step_bar(f"unlearning ({config.method}+{config.retain_loss})") as on_step:
        epochs = lambda epoch, net: on_step(epoch, config.epochs)  # noqa: E731
        run = unlearn_to_dir(model, tokenizer, sets.forget, sets.retain, res / "unlearn", config,
                             base_path=str(out / TESTBED_LAYOUT["target"]), data=sets.data[:2], command=command_line(),
                             on_epoch=epochs)
    candidate = HFModel.from_pretrained(str(res / "unlearn" / "model"), device="cpu", batch_size=batch_size)
    retrain = HFModel.from_pretrained(str(out / TESTBED_LAYOUT["retrain"]), device="cpu", batch_size=batch_size)
    label = f"{config.method}+{config.retain_loss}"
    models = ("target", "retrain", label)
    with progress_bar("unlearning evaluation (models)", len(models)) as advance:
        ev = unlearn_eval_to_dir({label: candidate}, res / "unlearn_eval", target=lm, retrain=retrain, sets=sets,
                                 config=EvalConfig(seed=seed, batch_size=batch_size), command=command_line(),
                                 on_model=lambda name: advance())
    summary = {"method": label, "setting": {k: v for k, v in DEMO_UNLEARN.items() if k not in ("method", "retain_loss")},
               "n_forget": len(sets.forget), "unlearn_seconds": run["summary"]["train_time_s"],
               "models": ev["summary"]["models"]}
    return {"summary": summary, "dirs": ["unlearn", "unlearn_eval"]}


def _show_unlearning(s: dict) -> None:
    m = s["models"]
    label = s["method"]
    fmt = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
    say(f"unlearning {s['n_forget']} forget documents with {label} ({', '.join(f'{k} {v}' for k, v in s['setting'].items())}), "
        "judged against the retrain model (never trained on them):")
    for name in ("target", "retrain", label):
        h = m[name]
        say(f"  {name}: VerbMem on F {fmt(h['verbmem_forget'], '.1f')}, extracted {fmt(h['extraction_forget'], '.0%')}, "
            f"PrivLeak {fmt(h['privleak'], '+.1f')}, KnowMem on R {fmt(h['knowmem_retain'], '.1f')}, "
            f"loss on R {fmt(h['loss_retain'], '.3f')}, forget quality p {fmt(h['forget_quality'], '.2g')}")


def _run_takedown(lm, out: Path, members, *, seed: int, batch_size: int) -> dict:
    """takedown-eval of TAKEDOWN: the members of the highest duplication level protected, the
    others unprotected, their cloze questions for utility."""
    from lmaudit.data import data_fingerprint
    from lmaudit.takedown.evaluate import TakedownEvalConfig, headline, takedown_eval_to_dir
    from lmaudit.testbed.load import load_knowledge

    top = max(r.meta["duplication"] for r in members)
    protected = [r for r in members if r.meta["duplication"] == top]
    unprotected = [r for r in members if r.meta["duplication"] != top]
    questions = load_knowledge(out)
    options = {k: v for k, v in TAKEDOWN.items() if k != "methods"}
    config = TakedownEvalConfig(**options, batch_size=batch_size, seed=seed)
    started = []

    def on_method(_label: str) -> None:  # a method's bar step ends when the next one starts
        if started:
            advance(1)
        started.append(_label)

    with progress_bar("takedown evaluation (methods, then timing)", len(TAKEDOWN["methods"].split(",")) + 1) as advance:
        r = takedown_eval_to_dir(
            lm, protected, unprotected, TAKEDOWN["methods"], out / "results" / "takedown",
            knowledge=questions["members"], config=config, command=command_line(), on_method=on_method,
            data=[{**data_fingerprint(out / "data" / "members.jsonl"), "role": "documents",
                   "protected": f"duplication == {top}", "unprotected": f"duplication != {top}"},
                  {**data_fingerprint(out / "data" / "knowledge" / "members.jsonl"), "role": "questions"}])
        advance(2)  # the last method, and the timing passes
    m = r["methods"]["memfree"]
    summary = {"n_protected_documents": len(protected), "protected_duplication": top,
               "exact_match": {k: r["methods"][k]["efficacy"]["exact_match"] for k in r["methods"]},
               "rouge_l_f1": {k: r["methods"][k]["efficacy"]["rouge_l_f1"]["mean"] for k in r["methods"]},
               "unprotected_rouge_l_f1_change": m["vs_none"]["rouge_l_f1_unprotected"],
               "relative_tokens_per_s": (m["efficiency"] or {}).get("relative_to_none"),
               "headline": headline(r, "memfree")}
    return {"summary": summary, "dirs": ["takedown"]}


def _run_watermark(lm, out: Path, nonmembers, *, size: str, seed: int, batch_size: int) -> dict:
    """The watermark round trip and the radioactivity test of WATERMARK (module docstring)."""
    from lmaudit.data import Record, data_fingerprint, read_records
    from lmaudit.models.base import GenerationConfig
    from lmaudit.testbed.radioactive import RadioactiveConfig, build_pair
    from lmaudit.watermark.attacks import parse_attacks
    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.run import detect_to_dir, generate_to_dir, radioactivity_to_dir

    key, res = WATERMARK["key"], out / "results"
    source = {**data_fingerprint(out / "data" / "nonmembers.jsonl"), "role": "prompts: first 16 tokens"}
    # The round trip uses non-members the radioactivity pair does not (it takes the first ones).
    n_docs, n_pair = WATERMARK_DOCS[size]
    docs = nonmembers[-2 * n_docs:]
    prompts_docs, human = docs[:n_docs], docs[n_docs:]
    config = WatermarkConfig.create(lm, key, preset=WATERMARK["preset"])
    gen = GenerationConfig(max_new_tokens=WATERMARK["max_new_tokens"], do_sample=True, temperature=1.0,
                           stop_at_eos=False, seed=seed)
    with step_bar("watermark: generating"):
        g = generate_to_dir(lm, prompts_docs, config, key, res / "watermark_generate", generation=gen,
                            batch_size=batch_size, data=[source], command=command_line())
    rows = [r for r in _rows(res / "watermark_generate") if "text" in r]
    [(_, paste)] = parse_attacks("copy_paste(n_spans=1,span_words=40)")
    made = str(res / "watermark_generate" / "samples.jsonl")
    texts = ([Record(r["id"], r["text"], made, n) for n, r in enumerate(rows, 1)]
             + [Record(f"{r['id']}+pasted", paste.apply(r["text"], seed=seed, human=h.text).text, made, n)
                for n, (r, h) in enumerate(zip(rows, human), 1)]
             + [Record(f"{h.id}+human", h.text, h.source, h.line) for h in human])
    d = detect_to_dir(lm, texts, config, key, res / "watermark_detect", command=command_line(),
                      data=[{"role": "texts: the generations as they are, each pasted (40 words) into another "
                                     "non-member, and those non-members alone", "made_from": source["path"]}])
    got = _rows(res / "watermark_detect")
    groups = {"generated": [r for r in got if "+" not in str(r["id"])],
              "pasted": [r for r in got if str(r["id"]).endswith("+pasted")],
              "human": [r for r in got if str(r["id"]).endswith("+human")]}
    round_trip = {name: {"n": len(rs), "detected": sum(r["detected"] is True for r in rs),
                         "window_detected": sum(bool(r["spans"]["windows"]) and r["spans"]["windows"][0]["p_corrected"]
                                                < d["summary"]["alpha"] for r in rs),
                         "too_short": sum(r["too_short"] for r in rs)} for name, rs in groups.items()}
    pair_config = RadioactiveConfig(n_texts=n_pair, seed=seed)
    with step_bar("watermark: radioactivity pair (two fine-tuned copies, made once)"):
        pair = build_pair(lm, nonmembers, out / "radioactive", key=key, config=pair_config, say=say)
    owner = out / "radioactive" / "data" / "watermarked.jsonl"
    owned = read_records(owner)
    radio = {}
    for name in ("watermarked", "control"):
        suspect = type(lm).from_pretrained(str(out / "radioactive" / name), device="cpu")
        with step_bar(f"watermark: radioactivity of the {name} copy"):
            r = radioactivity_to_dir(suspect, owned, WatermarkConfig.load(out / "radioactive" / "watermark.json"), key,
                                     res / f"radioactivity_{name}", null_keys=WATERMARK["null_keys"], seed=seed,
                                     batch_size=batch_size, command=command_line(),
                                     data=[{**data_fingerprint(owner), "role": "the data owner's watermarked texts"}])
        radio[name] = {s: {"p_value": t["p_value"], "z": t["z"], "n_scored": t["n_scored"],
                           "green_fraction": t.get("green_fraction"),
                           "null_rate_0.05": t["null_keys"]["rates"]["0.05"]["rate"],
                           "null_within": all(v["within"] for v in t["null_keys"]["rates"].values())}
                       for s, t in r["radioactivity"].items()}
    summary = {"preset": WATERMARK["preset"], "self_check": g["summary"]["self_check"]["detected"],
               "round_trip": round_trip, "radioactivity": radio,
               "pair": {"n_texts": pair["config"]["n_texts"], "generation_s": pair["generation_s"],
                        "fine_tuning_s": {k: v["train_wall_time_s"] for k, v in pair["training"].items()}}}
    return {"summary": summary, "dirs": ["watermark_generate", "watermark_detect", "radioactivity_watermarked",
                                         "radioactivity_control"]}


def _run_corpus(out: Path, *, seed: int) -> dict:
    """The corpus tools (CORPUS): the members' index, and the extraction continuations
    attributed to it."""
    from lmaudit.corpus.attribution import AttributeConfig, attribute_to_dir
    from lmaudit.corpus.bm25 import build_bm25
    from lmaudit.corpus.index import build_index
    from lmaudit.data import data_fingerprint, read_records

    res = out / "results"
    corpus = out / "data" / "members.jsonl"
    with step_bar("corpus: indexing the members"):
        # Rebuilt every run (well under a second): it must hold this testbed's members.
        index = build_index(read_records(corpus), out / "index", overwrite=True,
                            sources=[{**data_fingerprint(corpus), "role": "corpus"}])
        build_bm25(index, overwrite=True)
    attributed = {}
    for name in ("members", "nonmembers"):
        made = res / f"extract_{name}" / "samples.jsonl"
        outputs = read_records(made, text_field="generated", carry_errors=True)
        # Members' continuations should come from their own document; non-members' are the
        # control: their documents are not in the corpus, so only shared text can be found.
        config = AttributeConfig(min_bytes=CORPUS["min_bytes"], seed=seed,
                                 source_field="id" if name == "members" else None)
        with step_bar(f"corpus: attributing the {name}' continuations"):
            attributed[name] = attribute_to_dir(index, outputs, res / f"attribute_{name}", config=config,
                                                command=command_line(),
                                                data=[{**data_fingerprint(made), "role": "outputs (generated)"}])
    dedup = _run_dedup(out, corpus, seed=seed)
    consent = _run_consent(out)
    m = attributed["members"]
    summary = {"index": {"n_docs": index.n_docs, "n_bytes": index.n_bytes}, "dedup": dedup, "consent": consent,
               "attribution": {name: {"with_span": a["with_span"], "with_unique_span": a["with_unique_span"],
                                      "attributed_share": a["attributed_share_pooled"]}
                               for name, a in attributed.items()},
               "source_share": m["source_share_pooled"],
               "source_share_by_duplication": {lv: v["source_share_pooled"]
                                               for lv, v in (m.get("by_duplication") or {}).items()}}
    return {"summary": summary, "dirs": ["attribute_members", "attribute_nonmembers", "dedup", "consent"]}


def _reworded(text: str, rng) -> str:
    """``text`` with one word replaced: a near-copy, as a re-scraped or lightly edited page is."""
    words = text.split(" ")
    words[rng.randrange(len(words))] = "edited"
    return " ".join(words)


def _run_dedup(out: Path, corpus: Path, *, seed: int) -> dict:
    """Near-copies of each member in its training stream (each member as many times as the
    model saw it, every copy after the first re-worded in one word, so that the copies are
    near, not exact, and must be found by MinHash-LSH and verified): the counts should equal
    the testbed's true duplication."""
    import random

    from lmaudit.corpus.dedup_run import dedup_to_dir
    from lmaudit.data import Record, data_fingerprint, read_records

    members = read_records(corpus)
    stream = [Record(id=f"{r.id}#{k}", text=r.text if k == 1 else _reworded(r.text, random.Random(f"{seed}/{r.id}/{k}")),
                     source=r.source, line=r.line)
              for r in members for k in range(1, r.meta["duplication"] + 1)]
    queries = [Record(id=r.id, text=r.text, source=r.source, line=r.line) for r in members]
    with step_bar("corpus: near-copies of the members in the training stream"):
        r = dedup_to_dir(stream, out / "results" / "dedup", queries=queries, count_field="near_copies",
                         seed=seed, command=command_line(),
                         data=[{**data_fingerprint(corpus), "role": "corpus: each member repeated as many times as "
                                                                   "in training, each copy after the first with one "
                                                                   "word replaced; queries: the members"}])
    counts = {row["id"]: row["near_copies"] for row in _rows(out / "results" / "dedup", "queries")}
    agree = sum(counts.get(m.id) == m.meta["duplication"] for m in members)
    # A copy is missed when LSH never makes it a candidate: at Jaccard 0.84-0.86 (one word of
    # about 60 replaced) that happens with probability about 0.002 (the S-curve in results.json).
    missed = sum(max(0, m.meta["duplication"] - (counts.get(m.id) or 0)) for m in members)
    return {"n_stream": len(stream), "n_members": len(members), "counts_equal_duplication": agree,
            "missed_copies": missed, "n_reworded": len(stream) - len(members),
            "n_clusters": r["n_clusters"], "n_candidates": r["n_candidates"], "n_rejected": r["n_rejected"]}


def _consent_fixture(out: Path) -> Path:
    """The consent fixture's folder in the demo's: copied there once (the help examples read
    it), and used while it holds exactly what lmaudit ships; otherwise the shipped one is."""
    from lmaudit.corpus.consent import FIXTURE, copy_consent_fixture

    mine = out / "consent"
    if not mine.exists():
        return copy_consent_fixture(mine)
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    if files(mine) == files(FIXTURE):
        return mine
    say(f"{mine} is not the consent fixture lmaudit ships (changed?); the demo audits the shipped one")
    return FIXTURE


def _run_consent(out: Path) -> dict:
    """The consent audit (CONSENT) of the shipped robots.txt snapshots and their corpus."""
    from lmaudit.corpus.consent import AI_AGENTS
    from lmaudit.corpus.consent_run import consent_to_dir
    from lmaudit.data import data_fingerprint, read_records

    folder = _consent_fixture(out)
    corpus = folder / "corpus.jsonl"
    with step_bar("corpus: consent audit of the robots.txt fixture"):
        r = consent_to_dir(folder / "robots", AI_AGENTS, out / "results" / "consent", as_of=CONSENT["as_of"],
                           records=read_records(corpus), url_field="url", command=command_line(),
                           data=[{**data_fingerprint(corpus), "role": "corpus"}])
    agents = r["corpus"]["agents"]
    return {"as_of": r["as_of"], "n_sites": r["n_sites"], "n_documents": r["corpus"]["documents"],
            "restricted_tokens": {a: agents[a]["restricted"]["tokens"]["rate"] for a in CONSENT["shown"]},
            "restricted_documents": {a: agents[a]["restricted"]["documents"] for a in CONSENT["shown"]}}


def _pct(value) -> str:
    """A share for the terminal; n/a when there is none (a level with no attributed text)."""
    return "n/a" if value is None else f"{value:.1%}"


def _show_corpus(s: dict) -> None:
    a = s["attribution"]
    levels = ", ".join(f"{lv}x {_pct(v)}" for lv, v in reversed(s["source_share_by_duplication"].items()))
    say(f"corpus: index of the {s['index']['n_docs']:,} members ({s['index']['n_bytes']:,} bytes); extraction "
        f"continuations attributed to it (spans >= {CORPUS['min_bytes']} bytes): of the members' attributed text, "
        f"{_pct(s['source_share'])} comes from the member itself ({levels}); yet non-members' continuations, whose "
        f"documents are not in the corpus, hold spans found in it too ({_pct(a['nonmembers']['with_span']['rate'])} of "
        f"them; {_pct(a['nonmembers']['with_unique_span']['rate'])} one that a single member holds): the model "
        "recombines the corpus's phrases, so a span found is no proof of copying, the share from the expected "
        "document is")
    d = s["dedup"]
    say(f"near-copies (MinHash-LSH, Jaccard >= 0.8, verified) of each member in its training stream "
        f"({d['n_stream']:,} documents, each repeat re-worded in one word): the count equals the member's true "
        f"duplication for {d['counts_equal_duplication']:,} of {d['n_members']:,} members ({d['missed_copies']} of "
        f"{d['n_reworded']:,} re-worded copies missed by LSH)")
    c = s["consent"]
    shown = "; ".join(f"{a} {_pct(v)} of tokens ({c['restricted_documents'][a]['k']} of {c['restricted_documents'][a]['n']} "
                      "documents)" for a, v in c["restricted_tokens"].items())
    say(f"consent (robots.txt fixture of {c['n_sites']} sites, {c['n_documents']} documents, as of {c['as_of']}): "
        f"from sites that restrict {shown}")


def _show_watermark(s: dict) -> None:
    rt = s["round_trip"]
    say(f"watermark ({s['preset']}, 128 tokens): detected {rt['generated']['detected']}/{rt['generated']['n']} "
        f"generations at p < 0.001; pasted into another document {rt['pasted']['window_detected']}/{rt['pasted']['n']} "
        f"by the window search; documents without it {rt['human']['detected']}/{rt['human']['n']}")
    for name, settings in s["radioactivity"].items():
        parts = [f"{k} p = {v['p_value']:.2g} (null keys p<0.05: {v['null_rate_0.05']:.1%})" for k, v in settings.items()]
        say(f"radioactivity of the copy fine-tuned on {name} text: " + "; ".join(parts))


def _rows(run_dir: Path, name: str = "samples") -> list[dict]:
    return [json.loads(x) for x in (run_dir / f"{name}.jsonl").read_text().splitlines()]


def _show_memorization(s: dict) -> None:
    e, c, k, a = s["extraction"], s["copying"], s["knowledge"], s["acr"]
    say(f"extraction (32 -> 32 tokens, greedy): members {e['members']['exact_match_rate']:.1%}, "
        f"non-members {e['nonmembers']['exact_match_rate']:.1%}; token match {e['members']['token_match_mean']:.1%} / "
        f"{e['nonmembers']['token_match_mean']:.1%}")
    say(f"copying of those continuations: literal copy (ROUGE-L F1 >= 0.8) members {c['members']['literal_copy_rate']:.1%}, "
        f"non-members {c['nonmembers']['literal_copy_rate']:.1%}; longest common run {c['members']['lcs_words']:.1f} / "
        f"{c['nonmembers']['lcs_words']:.1f} words")
    dup = ", ".join(f"{lv}x {v:.1%}" for lv, v in k["members"].get("by_duplication", {}).items())
    say(f"knowledge QA (zero-shot cloze, exact match): members {k['members']['exact_match_rate']:.1%} ({dup}), "
        f"non-members {k['nonmembers']['exact_match_rate']:.1%}")
    parts = []
    for g in ("member", "nonmember"):
        if a.get(g, {}).get("n") == 0 and a[g].get("n_inconclusive"):
            parts.append(f"{g}s: all {a[g]['n_inconclusive']} inconclusive (time cap)")
        elif a.get(g, {}).get("n"):
            found = f"median ACR {a[g]['acr_median']:.2f} of the {a[g]['n_success']} found" if a[g]["n_success"] else "none found"
            inconclusive = f", {a[g]['n_inconclusive']} inconclusive (time cap)" if a[g].get("n_inconclusive") else ""
            parts.append(f"{g}s memorized (ACR > 1) {a[g]['memorized_rate']:.0%} of {a[g]['n']}, {found}{inconclusive}")
    say("ACR (shortest prompt that makes the model emit the text): " + "; ".join(parts) + f" ({a['seconds']:.0f} s)")


# What lmaudit writes in a run folder (``.partial``: an atomic write under way), and the run
# folders the demo writes in results/.
RUN_FILES = {"results.json", "samples.jsonl", "tokens.parquet", "cache.sqlite", "cache.sqlite-journal", RUN_MARK,
             REPORT_FILE, "watermark.json", "clusters.jsonl", "queries.jsonl", "documents.jsonl"}
RUN_DIRS = {"members", "nonmembers", "membership", "dataset_inference", "acr", "unlearn", "unlearn_eval", "takedown",
            "attribute_members", "attribute_nonmembers", "dedup", "consent",
            "watermark_generate", "watermark_detect", "radioactivity_watermarked", "radioactivity_control",
            *(f"{kind}_{split}" for kind in ("paired", "extract", "copying", "knowledge")
              for split in ("members", "nonmembers"))}


# The files of a model folder lmaudit saves (save_pretrained of the model and its tokenizer, a
# WHP spec, a LoRA adapter): what results/unlearn/model/ and adapter/ may hold.
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja", "lmaudit_whp.json", "adapter_config.json",
               "adapter_model.safetensors", "README.md"}


def _is_model_dir(path: Path) -> bool:
    return (path.name in ("model", "adapter") and path.is_dir() and not path.is_symlink()
            and all(p.is_file() and not p.is_symlink() and p.name in MODEL_FILES for p in path.iterdir()))


# The files of a saved MemFree index (NgramIndex.save): what results/takedown/memfree-index/ may hold.
INDEX_FILES = {"memfree_index.json", "ngrams.npy", "ngrams.bloom", "prefixes.bloom"}


def _is_index_dir(path: Path) -> bool:
    return (path.name == "memfree-index" and path.is_dir() and not path.is_symlink()
            and all(p.is_file() and not p.is_symlink() and p.name.removesuffix(".partial") in INDEX_FILES
                    for p in path.iterdir()))


def _is_run_file(path: Path) -> bool:
    if path.name == REPORT_FILE:
        return is_lmaudit_report(path)  # a report.html lmaudit did not write is the user's
    if path.name.startswith(f".{REPORT_FILE}.") and path.name.endswith(".partial"):
        return path.is_file() and not path.is_symlink()  # the report's temporary file, left by a kill
    return path.is_file() and not path.is_symlink() and path.name.removesuffix(".partial") in RUN_FILES


def _remove_results(res: Path) -> None:
    """Delete the demo's results folder, but only if lmaudit wrote everything in it: run files
    and the demo's own run folders (by name) holding nothing but run files. Anything else is refused, and nothing deleted."""
    if not res.exists() and not res.is_symlink():
        return
    if res.is_symlink() or not res.is_dir():
        fail(f"{res} is not a folder of lmaudit results; move it or choose another --out")
    strays = [p for p in res.iterdir()
              if not (_is_run_file(p) or (p.name in RUN_DIRS and p.is_dir() and not p.is_symlink()
                                          and all(_is_run_file(q) or (p.name == "unlearn" and _is_model_dir(q))
                                                  or (p.name == "takedown" and _is_index_dir(q))
                                                  for q in p.iterdir())))]
    if strays:
        names = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in strays)[:5])
        fail(f"{res} holds what lmaudit did not write ({names}{' and more' if len(strays) > 5 else ''}); the demo "
             "replaces this folder when it rebuilds the testbed: move them or choose another --out")
    shutil.rmtree(res)


def _load_matching(out: Path, info: dict):
    """The testbed's model, if it loads and matches the fingerprints in testbed.json, else None."""
    from lmaudit.models.hf import HFModel

    try:
        lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    except Exception:  # any missing or damaged file (transformers raises many types): rebuild
        return None
    if lm.fingerprint() != info["model_fingerprint"] or lm.tokenizer_fingerprint() != info["tokenizer_fingerprint"]:
        return None
    return lm


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(demo)
