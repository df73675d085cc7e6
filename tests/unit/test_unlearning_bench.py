"""The benchmark's pure parts (lmaudit.unlearning.bench) against expectations worked out by hand:
method names, the targets' misses, the best-setting choice and its ties, the frontier, the cut
of F for C5/C6 and the split of F into sequential requests."""

import math
from collections import Counter

import pytest

from lmaudit.data import Record
from lmaudit.testbed.forget import allocate
from lmaudit.unlearning.bench import BenchConfig, Targets, meets, method_spec, pareto, restrict, select, split_requests
from lmaudit.unlearning.measure import ModelMeasures

# --- method names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, method, retain", [
    ("ga", "ga", "none"), ("gd", "ga", "nll"), ("npo", "npo", "none"), ("npo+kl", "npo", "kl"),
    ("npo+nll", "npo", "nll"), ("simnpo+kl", "simnpo", "kl"), ("task_vector", "task_vector", "none"),
    ("whp", "whp", "none")])
def test_method_spec(name, method, retain):
    assert method_spec(name) == {"method": method, "retain_loss": retain}


@pytest.mark.parametrize("name", ["task_vector+kl", "whp+nll"])
def test_arithmetic_methods_take_no_retain_loss(name):
    with pytest.raises(ValueError, match="model-arithmetic method takes no retain loss"):
        method_spec(name)


@pytest.mark.parametrize("name, hint", [("npx", "did you mean 'npo'"), ("npo+kll", "did you mean 'kl'"),
                                        ("simnp", "did you mean 'simnpo'")])
def test_unknown_names_suggest_the_closest(name, hint):
    with pytest.raises(KeyError, match=hint):
        method_spec(name)


# --- targets, best setting, frontier ---------------------------------------------------------


def compared(gap, privleak, utility):
    fig = lambda v: None if v is None else {"value": v, "ci": None, "n": 1}  # noqa: E731
    return {"verbmem_forget_minus_retrain": fig(gap), "privleak": {"value": privleak},
            "knowmem_retain_vs_target": fig(utility)}


def test_meets_counts_each_miss_in_units_of_its_target():
    t = Targets()  # 5 points, 15, 90%
    got = meets(compared(-7.5, 30.0, 0.85), t)
    # |−7.5| − 5 = 2.5 → 0.5 of 5; 30 − 15 = 15 → 1.0 of 15; 0.90 − 0.85 = 0.05 → 0.5 of 0.10
    assert got["misses"] == pytest.approx({"verbmem": 0.5, "privleak": 1.0, "utility": 0.5})
    assert got["miss"] == pytest.approx(2.0)
    assert (got["verbmem"], got["privleak"], got["utility"], got["all"]) == (False, False, False, False)


def test_meets_at_the_boundaries_and_with_missing_figures():
    at = meets(compared(5.0, -15.0, 0.9), Targets())
    assert at["all"] and at["miss"] == 0
    over = meets(compared(-4.0, 10.0, 1.2), Targets())  # better than the target's utility: no miss
    assert over["all"] and over["misses"]["utility"] == 0
    missing = meets(compared(None, 0.0, 0.95), Targets())
    assert missing["misses"]["verbmem"] is None and not missing["verbmem"] and not missing["all"]
    assert missing["miss"] == math.inf


def point(miss, utility, epoch, lr, verbmem=None, label=None):
    return {"meets": {"miss": miss}, "utility": utility, "epoch": epoch, "lr": lr,
            "headline": {"verbmem_forget": verbmem}, "label": label or f"lr={lr} epoch={epoch}"}


def test_select_takes_the_smallest_miss_then_utility_then_epochs_then_lr():
    assert select([point(0.4, 0.99, 1, 1e-4), point(0.2, 0.5, 4, 1e-3)])["meets"]["miss"] == 0.2
    # every point meets all three: the highest utility wins
    assert select([point(0.0, 0.91, 1, 1e-4), point(0.0, 0.97, 3, 1e-3)])["utility"] == 0.97
    # equal miss and utility: the fewest epochs, then the lowest learning rate
    chosen = select([point(0.0, 0.95, 3, 1e-4), point(0.0, 0.95, 2, 1e-3), point(0.0, 0.95, 2, 3e-4)])
    assert (chosen["epoch"], chosen["lr"]) == (2, 3e-4)


def test_pareto_drops_dominated_points():
    points = [point(0, 0.9, 1, 1, verbmem=30.0),   # on: lowest VerbMem among those keeping 0.9
              point(0, 0.8, 2, 1, verbmem=30.0),   # off: same VerbMem, less utility
              point(0, 0.95, 3, 1, verbmem=35.0),  # on: the most utility
              point(0, 0.7, 4, 1, verbmem=20.0),   # on: the lowest VerbMem
              point(0, 0.6, 5, 1, verbmem=25.0),   # off: beaten by the point before on both
              point(0, None, 6, 1, verbmem=10.0)]  # off: no utility
    assert pareto(points) == [True, False, True, True, False, False]
    twins = [point(0, 0.9, 1, 1, verbmem=30.0), point(0, 0.9, 2, 1, verbmem=30.0)]
    assert pareto(twins) == [True, True]  # equal points do not dominate each other


# --- C5/C6: cutting F and splitting it --------------------------------------------------------


def test_restrict_cuts_only_the_forget_documents_and_questions():
    docs = {"forget": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "retain": [{"id": "r1"}], "holdout": [{"id": "h1"}]}
    know = {"forget": [{"doc_id": "a", "q": 1}, {"doc_id": "b", "q": 2}, {"doc_id": "c", "q": 3}],
            "retain": [{"doc_id": "r1", "q": 4}]}
    m = ModelMeasures(name="m", provenance={}, documents=docs, knowledge=know)
    cut = restrict(m, {"a", "c"})
    assert [r["id"] for r in cut.documents["forget"]] == ["a", "c"]
    assert [r["q"] for r in cut.knowledge["forget"]] == [1, 3]
    assert cut.documents["retain"] == docs["retain"] and cut.documents["holdout"] == docs["holdout"]
    assert cut.knowledge["retain"] == know["retain"]
    assert len(m.documents["forget"]) == 3  # the original is left whole


def records(levels: dict) -> list[Record]:
    out = []
    for level, n in levels.items():
        out += [Record(id=f"d{level}-{i}", text="x", source="t", line=1, meta={"duplication": int(level)})
                for i in range(n)]
    return out


def level_counts(chunk) -> dict:
    return dict(Counter(str(r.meta["duplication"]) for r in chunk))


def test_split_requests_is_a_stratified_partition():
    forget = records({"1": 5, "4": 3, "32": 2})
    chunks = split_requests(forget, 3, seed=0)
    ids = [r.id for c in chunks for r in c]
    assert len(ids) == len(set(ids)) == len(forget) and set(ids) == {r.id for r in forget}
    assert [len(c) for c in chunks] == [3, 3, 4]
    # by hand (largest remainders): 3 of {1: 5, 4: 3, 32: 2} → {1: 1, 4: 1, 32: 1};
    # 3 of the rest {1: 4, 4: 2, 32: 1} → {1: 2, 4: 1}; the last request takes what is left,
    # {1: 2, 4: 1, 32: 1}
    assert level_counts(chunks[0]) == {"1": 1, "4": 1, "32": 1}
    assert level_counts(chunks[1]) == {"1": 2, "4": 1}
    assert level_counts(chunks[2]) == {"1": 2, "4": 1, "32": 1}
    # each request is allocate()'s share of what was left when it was drawn
    rest = Counter(str(r.meta["duplication"]) for r in forget)
    for i, chunk in enumerate(chunks):
        share = {k: v for k, v in allocate(dict(rest), len(chunk)).items() if v}
        assert level_counts(chunk) == share
        rest -= Counter(level_counts(chunk))
        assert len(chunk) == (sum(rest.values()) + len(chunk)) // (len(chunks) - i)


def test_split_requests_even_levels():
    chunks = split_requests(records({"1": 8, "16": 8}), 2, seed=3)
    assert [level_counts(c) for c in chunks] == [{"1": 4, "16": 4}] * 2


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"methods": ()}, ValueError, "at least one method"),
    ({"methods": ("ga",), "scale_methods": ("npo",)}, ValueError, "scale method 'npo' is not among the methods"),
    ({"lrs": ()}, ValueError, "learning rates must be positive"),
    ({"lrs": (1e-3, 0.0)}, ValueError, "learning rates must be positive"),
    ({"lrs": (math.inf,)}, ValueError, "learning rates must be positive"),
    ({"epochs": 0}, ValueError, "epochs and batch_size"),
    ({"batch_size": 0}, ValueError, "epochs and batch_size"),
    ({"requests": -1}, ValueError, "requests at least 0"),
    ({"scale_sizes": (25, 0)}, ValueError, "scale sizes must be at least 1"),
    ({"methods": ("ga", "npo+kll")}, KeyError, "did you mean 'kl'"),
    ({"methods": ("task_vector+nll",)}, ValueError, "takes no retain loss"),
])
def test_bench_config_refuses(kwargs, error, match):
    with pytest.raises(error, match=match):
        BenchConfig(**kwargs)


def test_bench_config_defaults_and_sweep_eval():
    config = BenchConfig(methods=("ga", "whp"), scale_methods=("ga",))
    lean = config.sweep_eval
    assert not lean.tofu and lean.documents == config.sweep_documents
    assert lean.knowledge_docs == config.sweep_knowledge_docs and lean.n_bootstrap == config.sweep_bootstrap
    assert config.to_dict()["targets"] == {"verbmem_gap": 5.0, "privleak": 15.0, "utility": 0.9}
