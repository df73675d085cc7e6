"""What identifying a model costs: the old full-weight hash next to the new file-based identity.

On a randomly initialised Llama of about 1.1 B parameters (TinyLlama's shape) saved as
safetensors in a temporary folder (removed at the end):

  old        the previous HFModel.fingerprint, re-implemented here: blake2b of the config and
             every state_dict tensor's bytes, memoised on id() of tensors that state_dict()
             recreates, so every call hashes everything again
  load       HFModel.from_pretrained, for scale
  first      the first fingerprint() after loading a local folder: sha256 of the weight file
             (remembered afterwards in a cache folder, here a temporary one)
  reload     the first fingerprint() after loading the same folder again (file hash remembered)
  hub        the first fingerprint() when the weight file is a hub-cache blob named by its sha256
  repeat     a repeated fingerprint() on unchanged weights (the memo check alone)
  changed    the first fingerprint() after an in-place change of one weight (hashes the tensors)
  changed+1  the call after that (memoised again)

    python benchmarks/bench_fingerprint.py --dtype bfloat16
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def old_fingerprint(model) -> str:
    """The fingerprint as HFModel computed it before issue 10 (its memo never hit)."""
    volatile = {"_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"}
    h = hashlib.blake2b(digest_size=16)
    cfg = {k: v for k, v in model.config.to_dict().items() if k not in volatile}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        h.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - start, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--repeats", type=int, default=5, help="repeated calls timed (median reported)")
    parser.add_argument("--tmp", default=None, help="where to write the model (default: the system temp folder)")
    args = parser.parse_args()

    from transformers import LlamaConfig, LlamaForCausalLM

    from lmaudit.models.hf import HFModel
    from lmaudit.models.identity import sha256_file
    from lmaudit.testbed.corpus import generate_corpus
    from lmaudit.testbed.tokenizer import train_tokenizer

    work = Path(tempfile.mkdtemp(prefix="bench-fingerprint-", dir=args.tmp))
    os.environ["LMAUDIT_CACHE_DIR"] = str(work / "cache")  # keep the user's cache out of it
    dtype = getattr(torch, args.dtype)
    try:
        cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=args.layers,
                          num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
        torch.manual_seed(0)
        (model, build_s) = timed(lambda: LlamaForCausalLM._from_config(cfg, dtype=dtype))
        n_params = sum(p.numel() for p in model.parameters())
        path = work / "model"
        (_, save_s) = timed(lambda: model.save_pretrained(path, safe_serialization=True))
        del model
        train_tokenizer([r["text"] for r in generate_corpus(50, seed=0)], vocab_size=300).save_pretrained(path)
        file_gb = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 1e9

        lm, load_s = timed(lambda: HFModel.from_pretrained(str(path), dtype=args.dtype, device="cpu"))
        old = [timed(lambda: old_fingerprint(lm.model))[1] for _ in range(2)]
        fp, first_s = timed(lm.fingerprint)
        repeat = [timed(lm.fingerprint)[1] for _ in range(args.repeats)]
        again, reload_load_s = timed(lambda: HFModel.from_pretrained(str(path), dtype=args.dtype, device="cpu"))
        fp_again, reload_s = timed(again.fingerprint)
        assert fp_again == fp and fp.startswith("file:")
        del again

        # The same file as a hub cache holds it: snapshots/<rev>/model.safetensors -> blobs/<sha256>.
        digest = sha256_file(str(path / "model.safetensors"))
        (work / "blobs").mkdir()
        os.replace(path / "model.safetensors", work / "blobs" / digest)
        (path / "model.safetensors").symlink_to(work / "blobs" / digest)
        shutil.rmtree(work / "cache")  # nothing remembered: the blob's name is its hash
        hub, hub_load_s = timed(lambda: HFModel.from_pretrained(str(path), dtype=args.dtype, device="cpu"))
        fp_hub, hub_s = timed(hub.fingerprint)
        assert fp_hub == fp
        del hub

        with torch.no_grad():
            lm.model.model.layers[0].mlp.up_proj.weight[0, 0] += 1  # e.g. one unlearning step's worth
        changed, changed_s = timed(lm.fingerprint)
        changed_repeat = [timed(lm.fingerprint)[1] for _ in range(args.repeats)]
        assert changed != fp and changed.startswith("tensor:")
        print(json.dumps({
            "parameters": n_params, "dtype": args.dtype, "weights_gb": round(file_gb, 3),
            "torch_threads": torch.get_num_threads(), "build_s": build_s, "save_s": save_s,
            "load_s": {"first": load_s, "reload": reload_load_s, "hub": hub_load_s},
            "old_s": old,
            "new_s": {"first": first_s, "reload": reload_s, "hub": hub_s,
                      "repeat_median": statistics.median(repeat), "repeat_runs": repeat,
                      "changed": changed_s, "changed_repeat_median": statistics.median(changed_repeat)},
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
