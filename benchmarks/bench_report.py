"""How big and how fast is a report of a large membership run? Build time, page size, and the
time headless Chromium takes to open it, side by side for runs of 1,000 to 100,000 documents.

Each run folder is written the way ``lmaudit membership`` writes one (RunWriter, samples.jsonl,
results.json), with every attack evaluated by lmaudit's own ``evaluate_scores``; only the
scores are drawn at random (a model would take hours to score 100,000 documents here, and the
report's cost depends on the number of rows and attacks, not on where the scores came from):
members' scores are shifted by an attack-specific effect, so the ROC curves differ.

    python benchmarks/bench_report.py --rows 1000 10000 100000 --attacks 18 --out /tmp/bench-report

Opening needs Chromium and chromedriver (``apt-get install -y chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_run(out: Path, rows: int, attacks: int, seed: int = 0) -> float:
    """Write a membership run of ``rows`` documents (half members) to ``out``; return seconds."""
    from lmaudit.membership.evaluate import evaluate_scores
    from lmaudit.report.run import RunWriter

    started = time.time()
    rng = np.random.default_rng(seed)
    n_m = rows // 2
    labels = np.arange(rows) < n_m
    names = ["loss", *(f"min_k@{k / 10:g}" for k in range(1, attacks))][:attacks]
    scores = {}
    for j, name in enumerate(names):
        effect = 0.2 + 1.5 * j / max(attacks - 1, 1)
        scores[name] = rng.normal(0, 1, rows) + effect * labels
    evaluated = {name: {**evaluate_scores(s[labels], s[~labels], n_bootstrap=200, seed=seed), "name": name,
                        "paper": "synthetic", "access": "logits", "params": {}, "higher_means": "member"}
                 for name, s in scores.items()}
    samples = [{"id": f"doc-{i:06d}", "set": "member" if labels[i] else "nonmember", "n_tokens": int(60 + i % 40),
                "scores": {name: float(s[i]) for name, s in scores.items()}} for i in range(rows)]
    results = {"n_members": n_m, "n_nonmembers": rows - n_m, "attacks": evaluated, "blind_baselines": {},
               "distribution_shift_flag": None, "excluded": [], "n_errors": 0}
    best = max(evaluated, key=lambda k: evaluated[k]["auc"])
    with RunWriter(out, kind="membership", command=f"bench_report.py --rows {rows}") as run:
        run.samples(samples)
        run.finish(summary={"n_members": n_m, "n_nonmembers": rows - n_m, "n_attacks": attacks,
                            "best_attack": {"name": best, "auc": evaluated[best]["auc"]}},
                   provenance={"data": [], "synthetic": True}, extra=results)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--attacks", type=int, default=18, help="Attacks per run (the demo runs 18).")
    parser.add_argument("--opens", type=int, default=3, help="Times each page is opened (median reported).")
    parser.add_argument("--out", type=Path, default=Path("bench-report"))
    args = parser.parse_args()

    from lmaudit.report.page import write_report

    sys.path.insert(0, str(REPO / "tests" / "browser"))
    from chromium import Browser

    figures = []
    for rows in args.rows:
        folder = args.out / f"membership-{rows}"
        made = make_run(folder, rows, args.attacks)
        samples_mb = (folder / "samples.jsonl").stat().st_size / 1e6
        written = write_report([folder], folder / "report.html")
        figures.append({"rows": rows, "run_s": round(made, 1), "samples_mb": round(samples_mb, 1),
                        "report_s": written["seconds"], "report_mb": round(written["bytes"] / 1e6, 2),
                        "path": written["path"]})
    with Browser.start() as browser:
        for f in figures:
            opens = [browser.open_time(Path(f["path"])) for _ in range(args.opens)]
            page = browser.open(Path(f["path"]))
            rows_shown = page.js("document.querySelectorAll('div.samples tbody tr').length")
            # A click on a column heading re-sorts every row: the slowest interaction.
            sort_ms = page._browser.driver.execute_script(
                "const th = document.querySelectorAll('div.samples thead th')[4];"
                "const t0 = performance.now(); th.click(); return performance.now() - t0;")
            f.update({"load_s": statistics.median(o.load for o in opens),
                      "first_contentful_paint_s": statistics.median(o.first_contentful_paint or float("nan")
                                                                    for o in opens),
                      "loads": [round(o.load, 3) for o in opens], "rows_on_first_page": rows_shown,
                      "sort_ms": round(sort_ms, 1), "console_errors": len(page.console),
                      "requests": len(page.requests)})
    print(json.dumps(figures, indent=2))
    print("\n| documents | samples.jsonl MB | report MB | build s | open (load event) s | first contentful paint s | re-sort ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f in figures:
        print(f"| {f['rows']:,} | {f['samples_mb']} | {f['report_mb']} | {f['report_s']:.1f} | {f['load_s']:.2f} "
              f"(runs {', '.join(map(str, f['loads']))}) | {f['first_contentful_paint_s']:.2f} | {f['sort_ms']} |")


if __name__ == "__main__":
    main()
