"""The watermark configuration: one serialisable object, written beside every generation and
checked before every detection.

A detector run with a configuration other than the generator's does not fail: it reports
"not watermarked", which is the worst silent error a provenance tool can make (transformers'
detector and lm-watermarking disagree on defaults exactly this way, REFERENCE §10). So the
configuration records everything that decides which tokens are green (scheme, seeding, h,
γ, the key's id, the tokenizer's fingerprint) and :meth:`WatermarkConfig.check` refuses a
key, a tokenizer or a file that does not match, saying what differs.

The key itself is secret and never written: the file holds ``key_id``, a hash of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from lmaudit.watermark import seeding as _seeding

# Bumped whenever a change makes the same key and text give other green lists or values.
FORMAT = 1

PRESETS: dict[str, dict] = {
    "lefthash": {"scheme": "kgw", "seeding": "hash", "h": 1},
    "selfhash": {"scheme": "kgw", "seeding": "selfhash", "h": 4},
    "minhash": {"scheme": "kgw", "seeding": "minhash", "h": 4},
    "skipgram": {"scheme": "kgw", "seeding": "skipgram", "h": 4},
    "unigram": {"scheme": "kgw", "seeding": "unigram", "h": 0},
    "gumbel": {"scheme": "gumbel", "seeding": "hash", "h": 4},
}


def key_id(key: int) -> str:
    """A public name for a secret key: 16 hex digits of a salted sha256 (not invertible in
    practice for random keys; a small key can be guessed from it, so use a random 64-bit one)."""
    from lmaudit.watermark.prf import key32

    key32(key)  # validates
    return hashlib.sha256(f"lmaudit-watermark-key-id|{int(key)}".encode()).hexdigest()[:16]


def _kind_name(kinds) -> str:
    names = {str: "a string", int: "an integer", float: "a number", type(None): "null"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(dict.fromkeys("a number" if k is float else names[k] for k in kinds if not (
        k is int and float in kinds)))


class ConfigMismatch(ValueError):
    """Detection was asked with a key, tokenizer or configuration other than the generator's."""


@dataclass(frozen=True)
class WatermarkConfig:
    """Everything that decides a watermark's green lists (or Gumbel draws).

    Attributes:
        scheme: ``kgw`` (green list plus δ, Kirchenbauer et al. 2023) or ``gumbel``
            (Aaronson's distortion-free exponential sampling).
        seeding: How the context picks the pseudo-random stream
            (:mod:`lmaudit.watermark.seeding`).
        h: Context width of the seeding (0 for unigram).
        gamma: KGW's green share of the vocabulary (lm-watermarking's default 0.25).
        delta: KGW's logit bias on green tokens (lm-watermarking's default 2.0).
        key_id: :func:`key_id` of the secret key.
        tokenizer: The tokenizer's fingerprint
            (:meth:`lmaudit.models.base.LanguageModel.tokenizer_fingerprint`).
        vocab_size: Token ids are below it (the tokenizer's and the model's ``vocab_size``).
        logits_width: Width of the model's logits, recorded because it can exceed
            ``vocab_size`` (padded embedding matrices); green lists do not depend on it.
        format: :data:`FORMAT` of the lmaudit that wrote it.
    """

    scheme: str
    seeding: str
    h: int
    key_id: str
    tokenizer: str
    vocab_size: int
    gamma: float = 0.25
    delta: float = 2.0
    logits_width: int | None = None
    format: int = FORMAT

    def __post_init__(self) -> None:
        from lmaudit.watermark.schemes import SCHEMES

        for name, kinds in (("scheme", str), ("seeding", str), ("key_id", str), ("tokenizer", str),
                            ("gamma", (int, float)), ("delta", (int, float)), ("vocab_size", int), ("format", int),
                            ("logits_width", (int, type(None)))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"{name} must be {_kind_name(kinds)}, got {value!r}")

        if self.scheme not in SCHEMES:
            try:
                SCHEMES.get(self.scheme)
            except KeyError as err:  # a ValueError like every other bad field, so from_dict names the file
                raise ValueError(err.args[0]) from None
        _seeding.check(self.seeding, self.h)
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must be strictly between 0 and 1, got {self.gamma}")
        if not self.delta >= 0.0 or self.delta == float("inf"):
            raise ValueError(f"delta must be a finite non-negative number, got {self.delta}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer of at least 2, got {self.vocab_size!r}")

    @classmethod
    def create(cls, lm, key: int, *, preset: str | None = "selfhash", **options) -> "WatermarkConfig":
        """The configuration for generating with ``lm`` under ``key``: a preset's scheme,
        seeding and h (see :data:`PRESETS`), overridden by ``options``."""
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown watermark preset {preset!r} (known: {', '.join(PRESETS)})")
        base = dict(PRESETS[preset]) if preset else {}
        base.update(options)
        width = getattr(getattr(lm, "model", None), "config", None)
        return cls(key_id=key_id(key), tokenizer=lm.tokenizer_fingerprint(), vocab_size=int(lm.vocab_size),
                   logits_width=getattr(width, "vocab_size", None), **base)

    @property
    def context(self) -> int:
        """Preceding tokens a position needs before it is scored."""
        return _seeding.context(self.seeding, self.h)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "watermark config") -> "WatermarkConfig":
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a watermark config is a JSON object")
        if data.get("format") != FORMAT:
            raise ConfigMismatch(f"{source}: written for watermark format {data.get('format')!r}, this lmaudit reads "
                                 f"format {FORMAT}: green lists would differ, so it is refused")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(n for n in ("scheme", "seeding", "h", "key_id", "tokenizer", "vocab_size") if n not in data)
        if unknown or missing:
            raise ValueError(f"{source}: " + "; ".join(
                ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing field(s) {', '.join(missing)}"] if missing else [])))
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "WatermarkConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such watermark config") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a JSON watermark config ({err})") from None
        if isinstance(data, dict) and "watermark" in data and "scheme" not in data:
            data = data["watermark"]  # a generation's results.json holds the config under "watermark"
        config = cls.from_dict(data, source=str(path))
        object.__setattr__(config, "_source", str(path))  # named in check()'s errors; not a field
        return config

    def check(self, *, key: int | None = None, lm=None, expected: "WatermarkConfig | None" = None) -> None:
        """Refuse a key, model tokenizer or other configuration that does not match, naming
        every difference (never a silent "not watermarked")."""
        problems = []
        if key is not None and key_id(key) != self.key_id:
            problems.append(f"the key's id is {key_id(key)}, the config's {self.key_id} (another key)")
        if lm is not None:
            if lm.tokenizer_fingerprint() != self.tokenizer:
                problems.append(f"the model's tokenizer {lm.tokenizer_fingerprint()[:16]} is not the config's "
                                f"{self.tokenizer[:16]} (token ids would differ)")
            if int(lm.vocab_size) != self.vocab_size:
                problems.append(f"vocab_size {lm.vocab_size} differs from the config's {self.vocab_size}")
        if expected is not None and expected != self:
            diff = [f"{f.name} {getattr(expected, f.name)!r} vs {getattr(self, f.name)!r}" for f in fields(self)
                    if getattr(expected, f.name) != getattr(self, f.name)]
            problems.append("configs differ: " + ", ".join(diff))
        if problems:
            where = getattr(self, "_source", None)
            raise ConfigMismatch(f"{where + ': ' if where else ''}watermark config mismatch: " + "; ".join(problems))

    def with_options(self, **changes) -> "WatermarkConfig":
        return replace(self, **changes)
