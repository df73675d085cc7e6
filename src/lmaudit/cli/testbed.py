"""``lmaudit testbed``: build the offline testbed (corpus, split, tokenizer, trained model)."""

from __future__ import annotations

from pathlib import Path

import typer

from lmaudit.cli.common import fail, print_summary, say, step_bar
from lmaudit.cli.options import option_groups

# One command per example (tests/integration/test_cli_examples.py runs it as written); the
# goldfish command is in --goldfish's help.
EXAMPLE = "Example: lmaudit testbed --out testbed --seed 0 --size tiny"


@option_groups(omit=("overwrite", "report"))  # for --quiet; the folder has its own rules (testbed/folder.py)
def testbed(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for model/, data/ and testbed.json."),
    seed: int = typer.Option(0, help="Seed of the corpus, the split and training."),
    size: str = typer.Option("default", help="default (1,000 + 1,000 documents, ~4 min on 2 cores) or tiny (seconds)."),
    shift: str | None = typer.Option(
        None, help="Draw the non-members from another distribution: era (born 1985-2010), a control on which "
                   "model-free classifiers succeed. Default: members and non-members from one distribution."),
    forget: int | None = typer.Option(
        None, help="Also choose N members as a forget set (stratified over duplication) and train a retrain model "
                   "on the other members with the same recipe and seed, in retrain/, for unlearning (about doubles "
                   "the build time). On a complete testbed of the same seed, size and shift without a split, only the split "
                   "is added. Default: no forget split; the testbed is the same either way."),
    goldfish: str | None = typer.Option(
        None, metavar="K[,H]",
        help="Also train a goldfish model in goldfish/ (Hans et al. 2024): the target's data, seed, initial weights and "
             "recipe, but a pseudo-random 1 in K target tokens, decided by a hash of the H tokens before it (default "
             "13), left out of the loss; testbed.json's \"goldfish\" compares both models' extraction, ROUGE-L, loss "
             "on kept tokens and loss-attack AUC. On a complete testbed of the same seed, size and shift, only the "
             "goldfish model is trained (about the target's training time): lmaudit testbed --out testbed "
             "--goldfish 4,13. Default: none; the testbed is the same either way."),
) -> None:
    """Generate a corpus, train a small model on its members, and measure how much it memorised."""
    from lmaudit.testbed.build import SHIFTS, SIZES, build_testbed
    from lmaudit.testbed.folder import NotATestbedError, check_buildable

    if size not in SIZES:
        fail(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    if shift is not None and shift not in SHIFTS:
        fail(f"--shift must be one of {', '.join(SHIFTS)}, got {shift!r}")
    n_members = SIZES[size].n_members
    if forget is not None and not 1 <= forget < n_members:
        fail(f"--forget must be at least 1 and less than the {n_members} members of the {size} testbed "
             f"(some must be retained), got {forget}")
    gcfg = _goldfish_option(goldfish) if goldfish is not None else None
    try:
        check_buildable(out)  # refused with a message, before the progress bar starts
    except NotATestbedError as err:
        fail(str(err))
    with step_bar("training") as on_step:
        info = build_testbed(out, seed=seed, size=size, shift=shift, forget=forget, goldfish=gcfg, log=say,
                             on_step=on_step)
    m = info["measured"]
    if forget is not None and info["forget"].get("added_to_built_testbed"):
        say(f"added a forget split in {info['forget']['wall_time_s']:.0f} s to the complete testbed in {out} "
            "(its model and files unchanged)")
    say(f"built in {info['wall_time_s']:.0f} s: member loss {m['members']['mean_loss']}, "
        f"non-member loss {m['nonmembers']['mean_loss']}, extraction {m['members']['extraction_rate']:.1%} "
        f"of members vs {m['nonmembers']['extraction_rate']:.1%} of non-members")
    summary = {"out": str(out), "wall_time_s": info["wall_time_s"], "measured": m}
    if forget is not None:
        f = info["forget"]["measured"]
        figures = lambda model, name: (f"loss {f[model][name]['mean_loss']}, "
                                       f"extraction {f[model][name]['extraction_rate']:.1%}")
        say(f"forget set F ({forget} members): target {figures('target', 'forget')}; "
            f"retrain {figures('retrain', 'forget')}")
        say(f"holdout H (non-members): target {figures('target', 'holdout')}; retrain {figures('retrain', 'holdout')}")
        summary["forget"] = {model: {name: f[model][name] for name in ("forget", "retain", "holdout")}
                             for model in ("target", "retrain")}
    if gcfg is not None:
        g = info["goldfish"]
        if g.get("added_to_built_testbed"):
            say(f"added a goldfish model in {g['wall_time_s']:.0f} s to the complete testbed in {out} "
                "(its model and files unchanged)")
        say(_goldfish_line(g))
        summary["goldfish"] = {"config": g["config"]}
        for name in ("standard", "goldfish"):
            figures = g["measured"][name]
            summary["goldfish"][name] = {k: figures[k] for k in ("members", "nonmembers", "members_by_duplication")}
            summary["goldfish"][name]["loss_attack_auc"] = figures["loss_attack"]["auc"]
    extra = (", retrain/" if forget is not None else "") + (", goldfish/" if gcfg is not None else "")
    say(f"testbed in {out} (testbed.json, model/, data/{extra})")
    print_summary(summary)


def _goldfish_option(value: str):
    """``K`` or ``K,H`` as a GoldfishConfig (hash scheme, key 0), or exit with a message."""
    from lmaudit.takedown.goldfish import GoldfishConfig

    parts = [p.strip() for p in value.split(",")]
    try:
        if len(parts) not in (1, 2) or not all(p.isascii() for p in parts):
            raise ValueError
        numbers = [int(p) for p in parts]
    except ValueError:
        fail(f"--goldfish takes K or K,H (integers, e.g. 4,13), got {value!r}")
    try:
        return GoldfishConfig(*numbers)
    except ValueError as err:
        fail(f"--goldfish {value}: {err}")


def _goldfish_line(g: dict) -> str:
    """One line: the standard model's figures → the goldfish model's."""
    m, c = g["measured"], g["config"]
    top = max(m["standard"]["members_by_duplication"], key=int)

    def pair(figure) -> str:
        return f"{figure(m['standard'])} → {figure(m['goldfish'])}"

    return (f"goldfish k={c['k']} h={c['h']} (standard → goldfish): extraction of {top}x members "
            f"{pair(lambda x: format(x['members_by_duplication'][top]['extraction']['rate'], '.1%'))}, "
            f"of all members {pair(lambda x: format(x['members']['extraction']['rate'], '.1%'))}; "
            f"members' ROUGE-L {pair(lambda x: format(x['members']['rouge_l_f1_mean'], '.3f'))}; "
            "kept-token loss members/non-members "
            f"{pair(lambda x: format(x['members']['mean_loss_kept'], '.3f') + '/' + format(x['nonmembers']['mean_loss_kept'], '.3f'))}; "
            f"loss-attack AUC {pair(lambda x: format(x['loss_attack']['auc'], '.3f'))}")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(testbed)
