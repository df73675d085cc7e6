"""Where the model passes that grow with the input run: in this process, or on a Ray cluster.

Two kinds of pass grow with the number of documents: scoring (:func:`lmaudit.scoring.score.score_records`
and :func:`~lmaudit.scoring.score.score_stream`, through which every membership attack, dataset
inference, paired test and unlearning measure scores its documents) and generation
(``generate``: extraction, knowledge QA, takedown evaluation, watermark generation). An engine
runs those two; everything else stays in the calling process: tokenising, gradients, the
statistics over the scores, and the smaller passes that call the model's ``token_stats``
directly (ReCaLL's prefix, the log-probability of knowledge answers, the losses of extraction's
samples and of takedown's utility set, a watermark oracle's perplexity).

Audits never see the engine. :func:`on_engine` wraps a model so that its scoring and
``generate`` run on the engine, and the audit gets the wrapper, a model like any other. The
default engine, "local", hands the model back unwrapped, so the local path is exactly what it
was. Engines are registered by name (``ENGINES``); "ray" is imported only when asked for, so
the local engine needs nothing beyond lmaudit's own dependencies.

Example:
    >>> from lmaudit.models.fake import FakeLM
    >>> lm = FakeLM()
    >>> on_engine(lm, "local") is lm
    True
    >>> sorted(ENGINES)
    ['local', 'ray']
"""

from __future__ import annotations

from typing import Any

from lmaudit.registry import Registry

ENGINES = Registry("engine")
ENGINES.add_lazy("local", "lmaudit.engines.local:LocalEngine")
ENGINES.add_lazy("ray", "lmaudit.engines.ray:RayEngine")


class EngineError(RuntimeError):
    """An engine could not run a pass, or its results do not account for every input."""


def get_engine(engine: Any = None, **options):
    """The engine named ``engine`` ("local" when None) built with ``options``, or ``engine``
    itself when it already is one."""
    if engine is None:
        engine = "local"
    if isinstance(engine, str):
        return ENGINES.get(engine)(**options)
    if options:
        raise ValueError("options are given to an engine by name, not to an engine object")
    return engine


class EngineModel:
    """A model whose scoring and generation run on ``engine``; every other attribute and
    method is the wrapped model's (``local``), run in this process.

    The wrapped model stays loaded here: it tokenises, fingerprints the weights for the
    cache and provenance, and runs every pass that is neither scoring nor ``generate``
    (gradients, prompt search, predictions, direct ``token_stats`` calls). Each engine worker
    loads its own copy from the same name or path (:func:`load_spec`) and checks that its
    fingerprints are these.
    """

    def __init__(self, model, engine):
        self.local = model
        self.engine = engine

    def __getattr__(self, name: str):
        # Only reached for attributes the wrapper lacks: the model's own.
        return getattr(self.__dict__["local"], name)

    def generate(self, prompts, config, *, logits_processor=None, batch_size: int | None = None) -> list[list[int]]:
        return self.engine.generate(self.local, prompts, config, logits_processor=logits_processor,
                                    batch_size=batch_size)

    def engine_provenance(self) -> dict:
        return self.engine.provenance()


def on_engine(model, engine: Any = None, **options):
    """``model`` with its scoring and generation on ``engine`` (a name or an engine object).

    The local engine returns ``model`` itself (unwrapped, if it was on another engine); any
    other returns an :class:`EngineModel`. ``engine`` None leaves ``model`` as it is given, on
    whatever engine it already is: an audit that calls another (takedown evaluation asks
    knowledge questions) keeps its model's engine without passing it on.
    """
    if engine is None and not options:
        return model
    engine = get_engine(engine, **options)
    if isinstance(model, EngineModel):
        if model.engine is engine:
            return model
        model = model.local
    if engine.name == "local":
        return model
    spec = load_spec(model)  # a model no worker could load fails here, before any work
    if spec["backend"] == "vllm":
        raise ValueError("a vLLM model cannot run on the Ray engine: each vLLM engine schedules a whole GPU, and this "
                         "process would hold one too; use the hf backend on Ray, or vLLM on the local engine of each "
                         "GPU machine")
    return EngineModel(model, engine)


def load_spec(model) -> dict:
    """How a worker loads its own copy of ``model``: the arguments of the ``from_pretrained``
    that loaded it, plus the backend's name.

    Raises:
        ValueError: ``model`` was not loaded by a backend's ``from_pretrained`` (built or
            changed in memory), so no worker can load the same model.
    """
    spec = getattr(model, "load_spec", None)
    if not spec:
        raise ValueError(f"{type(model).__name__} {getattr(model, 'name', '')!r} was not loaded by from_pretrained "
                         "from a name or folder, so engine workers cannot load the same model; save it with "
                         "save_pretrained and load it from that folder, or use the local engine")
    return dict(spec)


def load_from_spec(spec: dict):
    """Load the model that :func:`load_spec` describes (in an engine worker)."""
    spec = dict(spec)
    backend = spec.pop("backend")
    if backend == "hf":
        from lmaudit.models.hf import HFModel as cls
    elif backend == "whp":
        from lmaudit.models.whp import WHPModel as cls
    elif backend == "vllm":
        from lmaudit.models.vllm import VLLMModel as cls
    else:
        raise ValueError(f"unknown backend {backend!r} in a model spec")
    return cls.from_pretrained(spec.pop("name_or_path"), **spec)


def check_fingerprints(model, expected: tuple[str, str], *, where: str) -> None:
    """Refuse a worker's model whose weights or tokenizer differ from the driver's (another
    version of the files on another machine would silently score a different model).

    Raises:
        EngineError: naming both fingerprints.
    """
    got = (model.fingerprint(), model.tokenizer_fingerprint())
    for what, a, b in (("weights", got[0], expected[0]), ("tokenizer", got[1], expected[1])):
        if a != b:
            raise EngineError(f"{where}: the {what} of {model.name!r} loaded here ({a}) differ from the driver's "
                              f"({b}); every machine must see the same model files")
