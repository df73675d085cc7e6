"""Takedown without retraining: stop a model reproducing protected text.

- At training time, the goldfish loss (:mod:`lmaudit.takedown.goldfish`): a pseudo-random
  1/k of the tokens never enters the loss, so no passage can be learnt verbatim.
- At decoding time, logits processors that plug into any Hugging Face ``generate`` and into
  :meth:`lmaudit.models.base.LanguageModel.generate`: MemFree n-gram filtering, top-k
  perturbation, R-CAD and system prompts.
- The CoTaEval protocol that judges them (efficacy, utility, efficiency).
"""
