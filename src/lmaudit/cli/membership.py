"""``lmaudit membership``: run membership attacks on known members and non-members and evaluate them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from lmaudit.cli.common import EXIT_STATUS, command_line, console, end_run, fail, pass_bars, say, start_run, state
from lmaudit.cli.loading import OutDir, attack_resources, check_attacks
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, ScoringOptions, check_policy, option_groups

EXAMPLE = ("Example: lmaudit membership --model lmaudit-demo/model --members lmaudit-demo/data/members.jsonl "
           "--nonmembers lmaudit-demo/data/nonmembers.jsonl --out runs/mia\n\n"
           f"{EXIT_STATUS} Here an error row is a document some attack could not score; documents left out "
           "by design (ReCaLL's prefix) have no row and are not errors.")


@option_groups()
def membership(
    members: Annotated[Path, typer.Option(help="Documents known to be in the training data.")],
    nonmembers: Annotated[Path, typer.Option(help="Documents known not to be, from the same distribution.")],
    out: OutDir,
    model: ModelOptions,
    scoring: ScoringOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    attacks: str = typer.Option(None, help="Comma-separated attacks (min_k sweeps k; min_k@0.3 picks one), or 'all'. "
                                           "Default: logits-only attacks, lowercase, and reference/DC-PDD when given."),
    reference_model: Optional[list[str]] = typer.Option(
        None, help="Reference model (name or path) for reference_diff / reference_ratio, scored with its own tokenizer. "
                   "Repeat for several: each reference attack then runs once per model (reference_diff@1, @2, ...)."),
    reference_corpus: Path = typer.Option(None, help="Texts for DC-PDD's token frequencies (any format --members takes)."),
    recall_prefix: Path = typer.Option(None, help="Known non-members for ReCaLL's prefix (default: drawn from --nonmembers and removed)."),
    mlm_perturber: str = typer.Option(None, help="Masked LM (name or path) for neighbourhood neighbours (default: offline word swaps)."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates for AUC intervals."),
    shift_threshold: float = typer.Option(0.6, help="Blind-baseline AUC that flags distribution shift."),
    seed: int = typer.Option(0, help="Seeds bootstrap, cross-validation, ReCaLL's draw, neighbours and perturbation edits."),
) -> None:
    """Per-document membership attacks: ROC-AUC with CI, TPR at low FPR, blind baselines, shift flag."""
    from lmaudit.engines import EngineError
    from lmaudit.membership.run import MembershipConfig, membership_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    policy = scoring.policy()
    check_attacks(attacks, reference_model=reference_model, reference_corpus=reference_corpus, backend=model.backend)
    runner = engine.get()  # Ray missing fails here, before any file is read
    member_recs, member_entry = inputs.read(members, role="members")
    nonmember_recs, nonmember_entry = inputs.read(nonmembers, role="nonmembers")
    resources, extra_entries = attack_resources(reference_model=reference_model, reference_corpus=reference_corpus,
                                                recall_prefix=recall_prefix, mlm_perturber=mlm_perturber,
                                                inputs=inputs, model=model)
    entries = [member_entry, nonmember_entry, *extra_entries]
    if "reference_model" in resources:  # the reference models score on the same engine
        resources["reference_model"] = engine.wrap(resources["reference_model"])
    lm = engine.wrap(model.load())
    check_policy(policy, lm)
    config = MembershipConfig(attacks=attacks, n_bootstrap=bootstrap,
                              shift_threshold=shift_threshold, seed=seed)
    try:
        with pass_bars() as on_pass:
            results = membership_to_dir(
                lm, member_recs, nonmember_recs, out, config=config, policy=policy, **resources,
                batch_size=model.batch_size, on_pass=on_pass, cache_path=scoring.cache_path(out), data=entries,
                command=command_line(), started=started, engine=runner)
    except (KeyError, ValueError, EngineError) as err:
        fail(str(err).strip('"'))
    show_membership(results)
    say(f"results in {out}/results.json, per-document scores in {out}/samples.jsonl")
    end_run(out, results, n_errors=results["n_errors"], rows="documents", why="not scored by every attack")


def _rate(figure: dict | None, key: str) -> str:
    """A TPR or FPR figure as a percentage, starred when it is unreliable; "-" when absent."""
    if figure is None:
        return "-"
    return f"{figure[key]:.1%}" + ("*" if figure["unreliable"] else "")


def _ap(entry: dict) -> str:
    ap = entry.get("average_precision")
    return "-" if ap is None else f"{ap['value']:.3f}"


# Header and cell of each column after the attack's name. The rate headers take two lines, so
# that the table fits in 100 columns with the longest attack name.
COLUMNS = (
    ("AUC", lambda a: f"{a['auc']:.3f}"),
    ("95% CI", lambda a: f"{a['auc_ci'][0]:.2f}-{a['auc_ci'][1]:.2f}"),
    ("TPR@\n10%FPR", lambda a: _rate(a["tpr_at_fpr"].get("0.1"), "tpr")),
    ("TPR@\n5%FPR", lambda a: _rate(a.get("tpr_at_5pct_fpr"), "tpr")),
    ("TPR@\n1%FPR", lambda a: _rate(a["tpr_at_fpr"].get("0.01"), "tpr")),
    ("TPR@\n0.1%FPR", lambda a: _rate(a["tpr_at_fpr"].get("0.001"), "tpr")),
    ("FPR@\n95%TPR", lambda a: _rate(a.get("fpr_at_95pct_tpr"), "fpr")),
    ("AP", _ap),
)

# Scored documents per side below which the table warns that its figures are coarse: with 30
# non-members the smallest FPR step is 3.3%, and an AUC interval is about ±0.1 wide.
SMALL_SAMPLE = 30


def _legend(results: dict) -> str:
    """What the stars mean, the n behind TPR@5%FPR, and the AP a random ranking gets."""
    parts = ["* unreliable: under 10 non-members above the threshold (TPR), or under 10 members below it (FPR)."]
    at5 = [a["tpr_at_5pct_fpr"] for a in results["attacks"].values() if a.get("tpr_at_5pct_fpr")]
    if at5:
        full = max(at5, key=lambda t: t["n_nonmembers"])  # attacks scored on fewer are named below the table
        parts.append(f"TPR@5%FPR: at most {full['max_false_positives']} of {full['n_nonmembers']} non-members "
                     "above its threshold.")
    aps = [a["average_precision"] for a in results["attacks"].values() if a.get("average_precision")]
    if aps:
        parts.append(f"AP: average precision, {aps[0]['chance']:.2f} for a random ranking (the share of members).")
    return " ".join([*parts, "Blind baselines never query the model."])


def _table(results: dict, title: str | None, columns) -> Table:
    """The attacks' figures in ``columns`` (of :data:`COLUMNS`); the blind baselines have only AUC and CI."""
    table = Table(title=title, show_edge=False)  # no outer border: fits 100 columns with the longest name
    table.add_column("attack", justify="left", no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for name, a in results["attacks"].items():
        table.add_row(name, *(["-"] * len(columns) if a["auc"] is None else [cell(a) for _, cell in columns]))
    for name, b in results.get("blind_baselines", {}).items():
        table.add_row(f"[dim]blind: {name}[/]", *(cell(b) if (h, cell) in COLUMNS[:2] else "" for h, cell in columns))
    return table


def _natural_width(table: Table) -> int:
    """Columns the table takes with nothing cut (Rich's own measure stops at the console's width)."""
    return console.measure(table, options=console.options.update(width=10_000)).maximum


def show_membership(results: dict, *, title: str | None = None) -> None:
    """The summary table, and a loud warning when the run is confounded by distribution shift."""
    if state.quiet:
        if results.get("distribution_shift_flag"):
            console.print("[bold red]WARNING: distribution shift[/] (see results.json)")
        return
    title = title or f"membership: {results['n_members']} members vs {results['n_nonmembers']} non-members"
    # A figure is never cut: where the table is wider than the terminal (Rich takes 80 columns
    # for piped output and CI logs), its columns go into as many tables as it takes.
    groups: list[list] = [[]]
    for column in COLUMNS:
        if groups[-1] and _natural_width(_table(results, None, [*groups[-1], column])) > console.width:
            groups.append([])
        groups[-1].append(column)
    for i, columns in enumerate(groups):
        table = _table(results, title if i == 0 else None, columns)
        console.print(table, width=max(console.width, _natural_width(table)))
    console.print(_legend(results), style="dim", highlight=False)
    # Each figure rests on the documents its attack could score, not on the set sizes above.
    for name, a in results["attacks"].items():
        if a["n_members"] < results["n_members"] or a["n_nonmembers"] < results["n_nonmembers"]:
            console.print(f"{name}: scored {a['n_members']} of {results['n_members']} members and "
                          f"{a['n_nonmembers']} of {results['n_nonmembers']} non-members (see errors in samples.jsonl)",
                          style="yellow")
    smallest = min((min(a["n_members"], a["n_nonmembers"]) for a in results["attacks"].values()), default=0)
    if smallest < SMALL_SAMPLE:
        console.print(f"[bold yellow]small sample:[/] as few as {smallest} scored documents on one side; AUC and "
                      "TPR are coarse at this size: read the intervals, not the points", highlight=False)
    if results.get("distribution_shift_flag"):
        shift = results["distribution_shift"]
        console.print(f"[bold white on red] DISTRIBUTION SHIFT [/] [bold red]model-free classifiers "
                      f"({', '.join(shift['flagged_by'])}) tell members from non-members "
                      f"({shift['rule']}). The attack AUCs above measure the data, not the model: "
                      "do not read them as evidence of training.[/]")
    excluded = results.get("excluded") or []
    if excluded:
        say(f"{len(excluded)} documents were left out of the evaluation (see 'excluded' in results.json)")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(membership)
