"""What every membership attack is and what it gets to work with.

An attack is a small frozen dataclass whose fields are its parameters (with defaults and a
docstring each), registered by name in :data:`ATTACKS`. It turns an :class:`AttackContext`
into one score per document, higher meaning "more likely a member", and a reason for every
document it could not score. Logits-only attacks read the token statistics of the one
scoring pass that the context already holds; attacks that need more (another pass over
changed texts, a reference model, gradients) ask the context for it, and the context
caches what several attacks share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, ClassVar, Literal, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.models.base import LanguageModel, ScoringPolicy, TokenStats
from lmaudit.registry import Registry
from lmaudit.scoring.cache import ScoreCache
from lmaudit.scoring.score import DocScore, score_records

#: Every attack, by name. Modules in ``lmaudit.membership.attacks`` register themselves.
ATTACKS = Registry("attack", package="lmaudit.membership.attacks")

#: What an attack needs from the model, from the weakest access to the strongest.
Access = Literal["black-box", "logits", "gradients"]


@dataclass
class AttackScores:
    """One attack's output: ``values[i]`` for document i (NaN where ``errors[i]`` says why).

    ``info`` holds run-level facts the results should carry (e.g. how many ReCaLL prefix
    documents fitted).
    """

    values: np.ndarray
    errors: list[str | None]
    info: dict = field(default_factory=dict)

    @classmethod
    def from_list(cls, values: Sequence[float | None], errors: Sequence[str | None], info: dict | None = None) -> "AttackScores":
        out = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        errs = list(errors)
        for i, v in enumerate(out):
            if not math.isfinite(v) and errs[i] is None:
                errs[i] = "non-finite score"
        out[~np.isfinite(out)] = math.nan
        return cls(out, errs, info or {})


@dataclass
class AttackContext:
    """Everything attacks may use, built once per run. Attacks never load models.

    Attributes:
        model: The target model.
        records: The documents under audit (members and non-members together).
        scores: The target model's scoring pass over ``records`` (same order).
        policy: The scoring policy as requested; every pass resolves it against its own
            model's context (a reference model may have a shorter one).
        batch_size: Sequences per forward pass for extra passes.
        seed: Seed for anything random (neighbours).
        reference_models: Second models for the reference-model attacks, each scored with
            its own tokenizer (one reference attack per model and attack when several).
        reference_corpus: Texts known to be outside the training data's documents under
            audit, for token-frequency statistics (DC-PDD).
        prefix: Non-member documents used as ReCaLL's prefix (removed from ``records``).
        perturber: Makes neighbour texts (neighbourhood attack).
        cache: Score cache for every extra pass (keys include the model and policy).
        on_pass: Called with a description before each extra pass (progress reporting).
    """

    model: LanguageModel
    records: Sequence[Record]
    scores: Sequence[DocScore]
    policy: ScoringPolicy
    batch_size: int = 16
    seed: int = 0
    reference_models: Sequence[LanguageModel] = ()
    reference_corpus: Sequence[Record] | None = None
    prefix: Sequence[Record] = ()
    perturber: object | None = None
    cache: ScoreCache | None = None
    on_pass: Callable[[str, int], Callable[[int], None] | None] | None = None
    memo: dict = field(default_factory=dict)

    @property
    def reference_model(self) -> LanguageModel | None:
        """The first reference model (None when there is none)."""
        return self.reference_models[0] if self.reference_models else None

    def score_texts(self, texts: Sequence[str], *, model: LanguageModel | None = None, what: str = "",
                    policy: ScoringPolicy | None = None) -> list[DocScore]:
        """Score extra texts with the target (or another) model under the run's policy (or
        ``policy``), cached."""
        model = model or self.model
        records = [Record(id=i, text=t, source=what or "extra", line=i + 1) for i, t in enumerate(texts)]
        progress = self.on_pass(what, len(records)) if self.on_pass else None
        try:
            return score_records(model, records, policy=policy or self.policy, batch_size=self.batch_size,
                                 cache=self.cache, progress=progress)
        except ValueError as err:  # a policy the other model cannot honour (e.g. a shorter context)
            raise ValueError(f"{what or 'extra pass'} with {model.name}: {err}") from None

    def shared(self, key: str, compute: Callable[[], object]):
        """A result several attacks use (e.g. the reference model's pass), computed once."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


@dataclass(frozen=True)
class Attack:
    """Base of every attack: metadata as class variables, parameters as dataclass fields.

    Subclasses set ``name``, ``paper``, ``access``, and implement :meth:`score`. Selection
    reads the rest of the metadata, never a list of names:

    - ``default``: run when no attacks are named (and what it needs is there);
    - ``needs``: run inputs that must be given: "reference_model" or "reference_corpus";
    - ``capabilities``: model capabilities (:data:`lmaudit.models.base.CAPABILITIES`), checked
      before any work;
    - ``draws_prefix``: takes ReCaLL-style prefix documents out of the non-members when the
      caller gives none;
    - ``sweep``: the parameter a ``name@value`` suffix sets (e.g. ``min_k@0.2``,
      ``perturb_diff@typos``, ``reference_diff@2``), swept over ``sweep_values`` when named
      bare (with none, a bare name is the default instance). A number is read
      as a float and written with ``:g``; a string parameter takes the text after ``@`` as it is;
    - ``logits_only``: the scoring pass's token statistics are all it reads (no extra pass).
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    access: ClassVar[Access]
    default: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[tuple[str, ...]] = ()
    draws_prefix: ClassVar[bool] = False
    sweep: ClassVar[str | None] = None
    sweep_values: ClassVar[tuple[float | str, ...]] = ()
    logits_only: ClassVar[bool] = False

    @property
    def label(self) -> str:
        """The name results use: ``min_k@0.2`` or ``perturb_diff@typos`` for a swept parameter, else the name."""
        if not self.sweep:
            return self.name
        value = getattr(self, self.sweep)
        return f"{self.name}@{value if isinstance(value, str) else format(value, 'g')}"

    @classmethod
    def parse_sweep(cls, text: str) -> float | int | str:
        """The swept parameter's value from the text after ``@``: as it is for a string
        parameter (its default is a string), an integer for an integer one, else a float."""
        default = next(f.default for f in fields(cls) if f.name == cls.sweep)
        if isinstance(default, str):
            return text
        return int(text) if isinstance(default, int) and not isinstance(default, bool) else float(text)

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> dict:
        return {"name": self.name, "paper": self.paper, "access": self.access, "params": self.params(),
                "higher_means": "member"}

    def score(self, ctx: AttackContext) -> AttackScores:
        raise NotImplementedError


@dataclass(frozen=True)
class KSweepAttack(Attack):
    """An attack averaging over a fraction k of the tokens, swept over ``sweep_values``.

    Attributes:
        k: Fraction of tokens averaged, in (0, 1]. The papers' default is 0.2.
    """

    sweep = "k"
    sweep_values = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    logits_only = True
    k: float = 0.2

    def __post_init__(self):
        if not 0 < self.k <= 1:
            raise ValueError(f"k must lie in (0, 1], got {self.k}")

    def token_values(self, stats: TokenStats) -> np.ndarray:
        """The per-token values whose lowest fraction k is averaged."""
        raise NotImplementedError

    def score(self, ctx: AttackContext) -> AttackScores:
        # Sorted once per document and attack family, shared by all seven k: each k is
        # then the mean of a prefix, not another partition of the same array.
        ranked = ctx.shared(f"{self.name}/sorted", lambda: [
            None if s.error is not None else np.sort(self.token_values(s.stats).astype(np.float64)) for s in ctx.scores])
        values = [None if r is None else float(r[: lowest_count(self.k, len(r))].mean()) for r in ranked]
        errors = [f"scoring: {s.error}" if s.error is not None else None for s in ctx.scores]
        return AttackScores.from_list(values, errors)


def per_document(ctx: AttackContext, fn: Callable[[DocScore, Record], float | None]) -> AttackScores:
    """Apply ``fn(score, record)`` to every scored document; error rows keep their scoring error.

    Documents are matched by position, never by id: ids are unique within a file but a
    member and a non-member may share one (two files numbered by line).
    """
    values, errors = [], []
    for s, rec in zip(ctx.scores, ctx.records, strict=True):
        if s.error is not None:
            values.append(None)
            errors.append(f"scoring: {s.error}")
        else:
            values.append(fn(s, rec))
            errors.append(None)
    return AttackScores.from_list(values, errors)


def scored_texts(ctx: AttackContext) -> list[str]:
    """The text each document's scoring pass covered: the whole text, except under
    ``overflow="truncate"``, where it is the kept tokens decoded.

    Attacks that combine the loss with something computed from the text (its compressed
    size, a rewritten copy) use this, so both sides describe the same text. Decoding the
    kept tokens can differ from the text's own characters where the tokenizer normalises
    (and a byte-level cut inside a character decodes to U+FFFD), but it is what was scored.
    """
    def compute() -> list[str]:
        out = [r.text for r in ctx.records]
        cut = [i for i, s in enumerate(ctx.scores) if s.error is None and s.n_truncated]
        for i, ids in zip(cut, ctx.model.encode([out[i] for i in cut]) if cut else []):
            out[i] = ctx.model.decode(ids[: ctx.scores[i].n_text_tokens - ctx.scores[i].n_truncated])
        return out

    return ctx.shared("scored_texts", compute)


def score_rewritten(ctx: AttackContext, texts: Sequence[str], *, what: str) -> list[DocScore]:
    """Score rewritten copies of :func:`scored_texts` (lowercased, edited), one per document.

    Under ``overflow="truncate"`` they are scored whole, in windows if the rewrite made them
    longer than the context: truncating them again would cut them at another place than the
    text (a rewrite seldom keeps the token count), and a ratio would compare two different
    spans. Under any other policy they are scored as the texts were.
    """
    policy = replace(ctx.policy, overflow="window") if ctx.policy.overflow == "truncate" else None
    return ctx.score_texts(texts, what=what, policy=policy)


def lowest_count(k: float, n: int) -> int:
    """⌊k·N⌋, at least one: how many of the lowest values Min-K% averages."""
    return max(1, math.floor(k * n + 1e-9))  # the epsilon keeps e.g. 0.3 * 10 at 3


def make_attack(label: str) -> Attack:
    """An attack from its label: ``"loss"``, or ``"min_k@0.2"`` / ``"perturb_diff@typos"`` for a
    swept parameter.

    >>> make_attack("min_k@0.2").params()
    {'k': 0.2}
    """
    name, at, value = label.partition("@")
    cls = ATTACKS.get(name)
    if at and not value:
        raise ValueError(f"{label!r}: nothing after @ (name the attack bare for its default or sweep)")
    if not value:
        return cls()
    if cls.sweep is None:
        raise ValueError(f"attack {name!r} takes no @ parameter (got {label!r})")
    try:
        return cls(**{cls.sweep: cls.parse_sweep(value)})
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None


def expand(names: Sequence[str]) -> list[Attack]:
    """Attack objects for names; a swept attack named without ``@`` expands to its sweep."""
    out = []
    for label in names:
        name = label.partition("@")[0]
        cls = ATTACKS.get(name)
        if cls.sweep and "@" not in label and cls.sweep_values:
            out += [cls(**{cls.sweep: v}) for v in cls.sweep_values]
        else:
            out.append(make_attack(label))
    labels = [a.label for a in out]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise ValueError(f"attack listed twice: {', '.join(sorted(dup))}")
    return out


__all__ = ["ATTACKS", "Attack", "AttackContext", "AttackScores", "TokenStats", "expand", "make_attack",
           "lowest_count", "per_document", "score_rewritten", "scored_texts", "KSweepAttack"]
