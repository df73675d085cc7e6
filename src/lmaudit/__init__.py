"""lmaudit: audit language models for their use of training data.

The Python API mirrors the command line; every entry point takes an already-loaded model
(:class:`lmaudit.models.hf.HFModel`) and records (:func:`lmaudit.data.read_records`):

    >>> import lmaudit                                                         # doctest: +SKIP
    >>> lm = lmaudit.HFModel.from_pretrained("lmaudit-demo/model")             # doctest: +SKIP
    >>> members = lmaudit.read_records("lmaudit-demo/data/members.jsonl")      # doctest: +SKIP
    >>> nonmembers = lmaudit.read_records("lmaudit-demo/data/nonmembers.jsonl")  # doctest: +SKIP
    >>> lmaudit.run_membership(lm, members, nonmembers).results["attacks"]["loss"]["auc"]  # doctest: +SKIP

| command | function (returns) | writes files |
| --- | --- | --- |
| ``lmaudit score`` | ``score_records`` | ``score_to_dir`` |
| ``lmaudit membership`` | ``run_membership`` | ``membership_to_dir`` |
| ``lmaudit dataset-inference`` | ``run_dataset_inference`` | ``dataset_inference_to_dir`` |
| ``lmaudit paired-test`` | ``run_paired_test`` | ``paired_test_to_dir`` |
| ``lmaudit unlearn-eval`` | ``evaluate_unlearning`` (``UnlearnSets``, ``EvalConfig``) | ``unlearn_eval_to_dir`` |
| ``lmaudit testbed`` | ``build_testbed`` | (same) |
| ``lmaudit unlearn`` | ``unlearn`` (``UnlearnConfig``; a WHP result loads as ``WHPModel``) | ``unlearn_to_dir`` |
| ``lmaudit unlearn-bench`` | ``run_bench`` (``BenchConfig``) | ``bench_to_dir`` |
| ``lmaudit takedown-eval`` | ``run_takedown_eval`` (``TakedownEvalConfig``, ``TakedownConfig``; any model filtered as ``TakedownModel``) | ``takedown_eval_to_dir`` |
| ``lmaudit watermark generate`` | ``watermark_generate`` (``WatermarkConfig``; ``WatermarkProcessor`` for any ``generate``) | ``watermark_generate_to_dir`` |
| ``lmaudit watermark detect`` | ``detect_tokens``, ``detect_texts`` | ``watermark_detect_to_dir`` |
| ``lmaudit watermark evaluate`` | ``run_watermark_eval`` (``WatermarkEvalConfig``) | ``watermark_evaluate_to_dir`` |
| ``lmaudit watermark radioactivity`` | ``reading_test``, ``closed_test`` | ``radioactivity_to_dir`` |
| ``lmaudit index build`` | ``build_index`` (then ``load_index(...).count``, ``.locate``, ``.longest``, ``.attribute``, ``.append``) | (same) |
| ``lmaudit attribute`` | ``run_attribute`` (``AttributeConfig``) | ``attribute_to_dir`` |
| ``lmaudit search`` | ``build_bm25``, ``load_bm25(...).search``; ``run_search`` | ``search_to_dir`` |
| ``lmaudit dedup`` | ``find_near_duplicates``, ``near_copies`` | ``dedup_to_dir`` |
| ``lmaudit consent`` | ``run_consent`` | ``consent_to_dir`` |

The commands that take ``--engine ray`` have ``*_to_dir`` functions (and, but for score, ``run_*``
or ``evaluate_unlearning`` ones) that take ``engine=``: "local", "ray", or an engine from
``get_engine("ray", address=..., workers=...)``. Scoring and generation then run on a Ray
cluster, with the local engine's results; ``build_index(..., engine="ray")`` sorts shards as
Ray tasks. Any other function runs on the engine of a model from ``on_engine(lm, "ray")``
(``score_records`` included). A ``RecordFile`` is a data file read as it is scored
(``score_to_dir``).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# Imported on first use, so `import lmaudit` stays cheap (no torch until a model is needed).
_API = {
    "HFModel": "lmaudit.models.hf",
    "ScoringPolicy": "lmaudit.models.base",
    "read_records": "lmaudit.data",
    "RecordFile": "lmaudit.data",
    "on_engine": "lmaudit.engines",
    "get_engine": "lmaudit.engines",
    "score_records": "lmaudit.scoring.score",
    "score_to_dir": "lmaudit.scoring.run",
    "run_membership": "lmaudit.membership.run",
    "membership_to_dir": "lmaudit.membership.run",
    "MembershipConfig": "lmaudit.membership.run",
    "run_dataset_inference": "lmaudit.membership.dataset_inference",
    "dataset_inference_to_dir": "lmaudit.membership.dataset_inference",
    "DatasetInferenceConfig": "lmaudit.membership.dataset_inference",
    "run_paired_test": "lmaudit.membership.paired",
    "paired_test_to_dir": "lmaudit.membership.paired",
    "ATTACKS": "lmaudit.membership.base",
    "run_extraction": "lmaudit.memorization.extraction",
    "extraction_to_dir": "lmaudit.memorization.extraction",
    "run_copying": "lmaudit.memorization.copying_run",
    "copying_to_dir": "lmaudit.memorization.copying_run",
    "copying_metrics": "lmaudit.memorization.copying",
    "run_knowledge": "lmaudit.memorization.knowledge",
    "knowledge_to_dir": "lmaudit.memorization.knowledge",
    "run_acr": "lmaudit.memorization.acr",
    "acr_to_dir": "lmaudit.memorization.acr",
    "evaluate_unlearning": "lmaudit.unlearning.evaluate",
    "unlearn_eval_to_dir": "lmaudit.unlearning.evaluate",
    "UnlearnSets": "lmaudit.unlearning.sets",
    "EvalConfig": "lmaudit.unlearning.measure",
    "build_testbed": "lmaudit.testbed.build",
    "unlearn": "lmaudit.unlearning.train",
    "unlearn_to_dir": "lmaudit.unlearning.train",
    "UnlearnConfig": "lmaudit.unlearning.train",
    "WHPModel": "lmaudit.models.whp",
    "run_bench": "lmaudit.unlearning.bench",
    "bench_to_dir": "lmaudit.unlearning.bench",
    "BenchConfig": "lmaudit.unlearning.bench",
    "sets_of_testbed": "lmaudit.unlearning.sets",
    "run_takedown_eval": "lmaudit.takedown.evaluate",
    "takedown_eval_to_dir": "lmaudit.takedown.evaluate",
    "TakedownEvalConfig": "lmaudit.takedown.evaluate",
    "TakedownConfig": "lmaudit.takedown.methods",
    "TakedownModel": "lmaudit.takedown.methods",
    "prepare_protected": "lmaudit.takedown.methods",
    "NgramIndex": "lmaudit.takedown.memfree",
    "MemFreeProcessor": "lmaudit.takedown.memfree",
    "TopKPerturbation": "lmaudit.takedown.perturb",
    "RCADProcessor": "lmaudit.takedown.rcad",
    "with_system_prompt": "lmaudit.takedown.sysprompt",
    "GoldfishConfig": "lmaudit.takedown.goldfish",
    "GoldfishCollator": "lmaudit.takedown.goldfish",
    "goldfish_mask": "lmaudit.takedown.goldfish",
    "WatermarkConfig": "lmaudit.watermark.config",
    "WatermarkProcessor": "lmaudit.watermark.processor",
    "watermark_generate": ("lmaudit.watermark.processor", "generate"),
    "detect_tokens": "lmaudit.watermark.detect",
    "detect_texts": "lmaudit.watermark.detect",
    "run_watermark_eval": "lmaudit.watermark.evaluate",
    "WatermarkEvalConfig": "lmaudit.watermark.evaluate",
    "reading_test": "lmaudit.watermark.radioactive",
    "closed_test": "lmaudit.watermark.radioactive",
    "watermark_generate_to_dir": ("lmaudit.watermark.run", "generate_to_dir"),
    "watermark_detect_to_dir": ("lmaudit.watermark.run", "detect_to_dir"),
    "watermark_evaluate_to_dir": ("lmaudit.watermark.run", "evaluate_to_dir"),
    "radioactivity_to_dir": "lmaudit.watermark.run",
    "build_index": "lmaudit.corpus.index",
    "load_index": "lmaudit.corpus.index",
    "run_attribute": "lmaudit.corpus.attribution",
    "attribute_to_dir": "lmaudit.corpus.attribution",
    "AttributeConfig": "lmaudit.corpus.attribution",
    "build_bm25": "lmaudit.corpus.bm25",
    "load_bm25": "lmaudit.corpus.bm25",
    "run_search": "lmaudit.corpus.search_run",
    "search_to_dir": "lmaudit.corpus.search_run",
    "find_near_duplicates": "lmaudit.corpus.dedup",
    "near_copies": "lmaudit.corpus.dedup",
    "dedup_to_dir": "lmaudit.corpus.dedup_run",
    "run_consent": "lmaudit.corpus.consent_run",
    "consent_to_dir": "lmaudit.corpus.consent_run",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'lmaudit' has no attribute {name!r}")
