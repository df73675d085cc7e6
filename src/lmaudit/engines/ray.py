"""The Ray engine: scoring and generation on an actor pool of a Ray cluster, one model copy per
worker (a GPU, or a CPU here), and index shards as Ray tasks.

Install it with ``pip install "lmaudit[ray]"``. Ray is imported only when this engine is used.

How a scoring pass runs (:meth:`RayEngine.score`):

1. The driver (this process) keeps the model it loaded: it fingerprints the weights and
   tokenizer, and it alone reads and writes the score cache (SQLite is not safe across
   machines, and only the driver's disk is sure to be there).
2. Ray Data reads the input: a :class:`lmaudit.data.RecordFile` through lmaudit's own reader
   (:func:`records_datasource`: exact ids, so "007" stays a string, and lmaudit's errors naming
   file, line and field; Ray's ``read_json`` turns such ids into numbers), or records already
   in memory. The read runs at ``num_cpus=0``: with every CPU held by a scoring actor, a read
   task that needs one waits forever, with no error.
3. Each actor loads its own copy from the model's name or path (:func:`lmaudit.engines.load_spec`),
   refuses to run if its fingerprints differ from the driver's, and scores batches of
   ``docs_per_task`` documents with :func:`lmaudit.scoring.score.score_records`, so windows are
   bucketed by length within each batch, as locally. Documents already in the cache are
   skipped by key and filled in by the driver.
4. Results stream back in input order (``preserve_order``). The driver checks that row i comes
   i-th, writes each batch's new entries to the cache in one transaction, and yields the
   scores. After the last row it checks that every input row came back once.

Faults: Ray Data restarts an actor that dies (its process killed, its node lost) and retries
its batch, so a lost worker costs time, not rows. An error raised by lmaudit's own code is not
retried: it ends the pass, and the caller's run writer leaves no results.json. A killed driver
loses only the batches not yet committed to the cache: the same command resumes from it.

Generation (:meth:`RayEngine.generate`) cuts the prompts exactly as
:meth:`lmaudit.models.hf.HFModel.generate` does (sorted by length, ``batch_size`` per batch, batch
``b`` seeded ``config.seed + b``) and sends each batch whole to a worker, so greedy and sampled
outputs are the local engine's token for token (same batch, same seed, same padding).
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from lmaudit.engines import EngineError, check_fingerprints, load_from_spec, load_spec

#: Rows per block of the streamed read: small blocks spread over the actor pool evenly and
#: bring the first results back early.
ROWS_PER_BLOCK = 512
STATS_FIELDS = ("token_ids", "logprob", "vocab_mean", "vocab_std", "entropy")
_LOCAL_INSTANCE = False  # whether the Ray this process joined is an instance it started itself


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is what the engine uses; fail here if the extra lacks it
    except ImportError:
        raise ImportError('the Ray engine needs Ray Data: pip install "lmaudit[ray]"') from None
    return ray


class RayEngine:
    """Run scoring and generation on a Ray cluster.

    Args:
        address: The cluster to join (``ray://host:10001`` or ``auto``); None: the
            ``RAY_ADDRESS`` environment variable, else a Ray instance started here, on this
            machine's CPUs, and stopped when the process ends.
        workers: Actors, each with its own model copy. None: one per GPU when the model is
            on a GPU, else one per CPU of the cluster.
        docs_per_task: Documents (or, for generation, prompts) per call to a worker: enough
            for length bucketing to work (500: 99.2% of the padding efficiency of one global
            sort on testbed documents), few enough to spread over the workers.
        object_store_mib: Object store of a local instance (documents and scores in flight).
        device: The workers' device ("cuda", "cpu" or "auto": cuda on a cluster with GPUs).
            None: the device the model was asked for (its ``load_spec``). So a driver can hold
            its own copy on the CPU while the workers use GPUs.
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, workers: int | None = None, docs_per_task: int = 512,
                 object_store_mib: int = 512, device: str | None = None):
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if docs_per_task < 1:
            raise ValueError(f"docs_per_task must be at least 1, got {docs_per_task}")
        self.address = address
        self.workers = workers
        self.docs_per_task = docs_per_task
        self.object_store_mib = object_store_mib
        if device not in (None, "auto", "cpu") and not str(device).startswith("cuda"):
            raise ValueError(f"device must be cuda, cpu or auto, got {device!r}")
        self.device = device
        _import_ray()  # a missing extra fails here, before any data is read or model loaded

    # ------------------------------------------------------------------ cluster
    def connect(self) -> None:
        """Join the cluster (or start the local instance) now: an address that does not answer
        raises ConnectionError within seconds, where Ray itself would retry for minutes."""
        address = self.address or os.environ.get("RAY_ADDRESS")
        host, _, port = (address or "").removeprefix("ray://").rpartition(":")
        if host and port.isdigit():  # host:port, [v6]:port, ray://host:port; "auto" and others go to Ray
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
            except OSError as err:
                raise ConnectionError(f"the Ray cluster at {address} does not answer ({err}); check --ray-address "
                                      "or RAY_ADDRESS (host:port of the head node, or ray://host:10001)") from None
        try:
            self._init()
        except Exception as err:  # noqa: BLE001 - ray.init raises many kinds; the user needs one line
            raise ConnectionError(f"cannot start or join Ray ({address or 'a local instance'}): "
                                  f"{type(err).__name__}: {err}") from err

    def _init(self):
        ray = _import_ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if address:
                ray.init(address=address, **quiet)
            else:
                # A private instance: no token file written to ~/.ray, a small object store, and a
                # short temp folder (its socket paths must fit in 107 bytes).
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
                temp = tempfile.mkdtemp(prefix="lmray", dir="/tmp" if os.path.isdir("/tmp") else None)
                ray.init(num_cpus=os.cpu_count(), object_store_memory=self.object_store_mib * 2**20,
                         _temp_dir=temp, **quiet)
                global _LOCAL_INSTANCE
                _LOCAL_INSTANCE = True
                atexit.register(_shutdown, temp)
        import logging

        from ray.data import DataContext

        # No per-dataset "execution finished" lines, and no Ray traceback of a worker's error:
        # the error itself is raised again here, as the lmaudit error it was (_unwrapped).
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        ctx = DataContext.get_current()
        ctx.execution_options.preserve_order = True  # results in input order
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.max_errored_blocks = 0  # never drop rows: an error ends the pass
        return ray

    def _pool(self, ray, model, tasks: int | None = None) -> dict:
        """map_batches arguments for the actor pool: its size (never more actors than ``tasks``,
        when known: an idle actor would only load a model) and each actor's resources."""
        # Workers take a GPU each when the model was asked for on one ("cuda", or "auto" on a
        # cluster that has GPUs), whatever device the driver's own copy ended up on.
        requested = str(self.device or load_spec(model).get("device") or "auto")
        resources = ray.cluster_resources()
        gpu = requested.startswith("cuda") or (requested == "auto" and resources.get("GPU", 0) >= 1)
        workers = self.workers or max(1, int(resources.get("GPU" if gpu else "CPU", 1)))
        workers = min(workers, tasks) if tasks else workers
        self._used = {"workers": workers, "device": "cuda" if gpu else "cpu"}  # for provenance
        return {"compute": ray.data.ActorPoolStrategy(size=workers), "num_cpus": 1, "num_gpus": 1 if gpu else 0,
                "device": "cuda" if gpu else "cpu", "workers": workers}

    def provenance(self) -> dict:
        """The cluster the passes ran on, as Ray reports it (not as it was asked for: a process
        already joined to a cluster stays on it)."""
        import ray

        info = {"name": self.name, "workers_requested": self.workers, "docs_per_task": self.docs_per_task,
                "ray_version": ray.__version__}
        info.update(getattr(self, "_used", {}))  # the last pool's size (never more than its tasks) and device
        if ray.is_initialized():
            info["address"] = "local instance" if _LOCAL_INSTANCE else ray.get_runtime_context().gcs_address
            info["cluster_resources"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        return info

    # ------------------------------------------------------------------ scoring
    def score(self, model, records, *, policy, batch_size: int = 16, cache=None, progress=None) -> Iterator:
        """Score ``records`` (a :class:`~lmaudit.data.RecordFile` or any iterable of records) on the
        cluster; yields a :class:`~lmaudit.scoring.score.DocScore` per record, in input order."""
        from lmaudit.data import Record, RecordFile
        from lmaudit.scoring.score import DocScore, _finish, _lacks_vocab_stats, checked_fields, score_records

        spec = load_spec(model)
        resolved = policy.resolved(model.max_length)  # a bad policy fails before the cluster starts
        fingerprints = (model.fingerprint(), model.tokenizer_fingerprint())
        ray = self._init()
        if isinstance(records, RecordFile):
            pool = self._pool(ray, model)
            ds = ray.data.read_datasource(records_datasource(records), num_cpus=0)
            expected = None
        else:
            records = list(records)
            expected = len(records)
            if not records:
                return
            pool = self._pool(ray, model, tasks=-(-expected // self.docs_per_task))
            ds = ray.data.from_arrow([_records_table(records[i:i + self.docs_per_task], first=i)
                                      for i in range(0, len(records), self.docs_per_task)])
        cached = ray.put(frozenset(cache.keys())) if cache is not None and len(cache) else None
        ds = ds.map_batches(
            _Scorer, batch_size=self.docs_per_task, batch_format="pyarrow", compute=pool["compute"],
            num_cpus=pool["num_cpus"], num_gpus=pool["num_gpus"],
            fn_constructor_kwargs={"spec": {**spec, "device": pool["device"]}, "fingerprints": fingerprints,
                                   "policy": resolved.to_dict(), "batch_size": batch_size, "cached": cached})
        vocab, checked = checked_fields(model)
        n = 0
        for batch in _unwrapped(ds.iter_batches(batch_size=None, batch_format="pyarrow")):
            scores, new = [], []
            for row in _rows(batch):
                if row["seq"] != n:
                    raise EngineError(f"the Ray engine returned row {row['seq']} where row {n} was due")
                doc_id = json.loads(row["id_json"])
                if row["cached"]:
                    hit = cache.get(row["key"])
                    if hit is None:
                        raise EngineError(f"row {n} (id {doc_id!r}) was skipped as cached, but the cache lost it")
                    if vocab and _lacks_vocab_stats(hit[1]):  # written by a backend without them (vLLM)
                        score = score_records(model, [Record(id=doc_id, text=row["text"], source="", line=0)],
                                              policy=policy, batch_size=batch_size, cache=cache)[0]
                    else:
                        score = _finish(doc_id, hit[1], checked=checked, **hit[0])
                        score.from_cache = True
                elif row["error"]:
                    score = DocScore(id=doc_id, n_text_tokens=row["n_text_tokens"], n_truncated=row["n_truncated"],
                                     n_windows=row["n_windows"], error=row["error"])
                else:
                    meta = {k: int(row[k]) for k in ("n_text_tokens", "n_truncated", "n_windows")}
                    score = _finish(doc_id, row["stats"], checked=checked, **meta)
                    new.append((row["key"], meta, row["stats"]))
                scores.append(score)
                n += 1
            if cache is not None and new:
                cache.put_many(new)  # committed per batch: a killed driver resumes from here
            if progress:
                progress(len(scores))
            yield from scores
        if expected is None:  # every row must have come back: the file's count, or a pass to count it
            expected = records.rows if records.rows is not None else sum(1 for _ in records)
        if n != expected:
            raise EngineError(f"the Ray engine returned {n} rows for {expected} input rows")

    # --------------------------------------------------------------- generation
    def generate(self, model, prompts: Sequence[Sequence[int]], config, *, logits_processor=None,
                 batch_size: int | None = None) -> list[list[int]]:
        """New tokens for every prompt, each batch generated whole by one worker (see the
        module docstring: the same batches and seeds as the local engine)."""
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (use the BOS token for an empty prompt)")
        processors = list(logits_processor or [])
        for p in processors:
            if not getattr(p, "portable", True):
                raise EngineError(f"{type(p).__name__} cannot run on the Ray engine: {p.portable_reason}")
        if not prompts:
            return []
        spec = load_spec(model)
        fingerprints = (model.fingerprint(), model.tokenizer_fingerprint())
        bs = batch_size or getattr(model, "batch_size", 16)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        units = [{"unit": b, "rows": json.dumps(order[s:s + bs]),
                  "prompts": json.dumps([list(map(int, prompts[i])) for i in order[s:s + bs]])}
                 for b, s in enumerate(range(0, len(order), bs))]
        per_call = max(1, self.docs_per_task // bs)  # batches of prompts per call to a worker
        tasks = -(-len(units) // per_call)
        ray = self._init()
        pool = self._pool(ray, model, tasks=tasks)
        ds = ray.data.from_items(units, override_num_blocks=tasks).map_batches(
            _Generator, batch_size=per_call, batch_format="numpy", compute=pool["compute"],
            num_cpus=pool["num_cpus"], num_gpus=pool["num_gpus"],
            fn_constructor_kwargs={"spec": {**spec, "device": pool["device"]}, "fingerprints": fingerprints,
                                   "config": dataclasses.asdict(config), "processors": processors})
        out: list[list[int] | None] = [None] * len(prompts)
        for batch in _unwrapped(ds.iter_batches(batch_size=None, batch_format="numpy")):
            for rows, new in zip(batch["rows"], batch["new"]):
                for i, tokens in zip(json.loads(rows), json.loads(new)):
                    if out[i] is not None:
                        raise EngineError(f"the Ray engine returned prompt {i} twice")
                    out[i] = tokens
        missing = [i for i, o in enumerate(out) if o is None]
        if missing:
            raise EngineError(f"the Ray engine returned no output for {len(missing)} of {len(prompts)} prompts")
        return out  # type: ignore[return-value]

    # -------------------------------------------------------------- index shards
    def executor(self, jobs: int):
        """``submit(fn, *args) -> Future`` running ``fn`` as a one-CPU Ray task (index shards;
        every node must see the paths it is given)."""
        return _TaskExecutor(self._init())


class _TaskExecutor:
    def __init__(self, ray):
        self.ray = ray

    def submit(self, fn, *args, **kwargs):
        return self.ray.remote(num_cpus=1, max_retries=3)(fn).remote(*args, **kwargs).future()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass  # tasks belong to the cluster; nothing of ours to stop


def _shutdown(temp: str) -> None:
    import ray

    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)  # the folder this process made for its own instance


def _unwrapped(batches: Iterable) -> Iterator:
    """``batches``, with an error raised in a worker re-raised as the lmaudit error it was (a
    DataError naming file and line, an EngineError), not as Ray's wrapper of it."""
    import re

    from lmaudit.data import DataError

    try:
        yield from batches
    except Exception as err:
        cause = err
        while cause is not None:  # Ray's task errors carry the original as .cause
            if type(cause) in (DataError, EngineError):
                raise type(cause)(str(cause)) from err
            cause = getattr(cause, "cause", None) or cause.__cause__
        # An actor that died in its constructor is reported with the traceback as text only.
        found = re.findall(r"^lmaudit\.(?:data\.DataError|engines\.EngineError): (.+)$", str(err), flags=re.M)
        if found:
            kind = DataError if "DataError" in str(err).split(found[-1])[0].rsplit("\n", 1)[-1] else EngineError
            raise kind(found[-1]) from err
        # Otherwise the innermost "SomethingError: message" line of the traceback Ray carries,
        # the cause (a CUDA out-of-memory error, say) rather than Ray's header.
        causes = re.findall(r"^(?:\w+\.)*\w*(?:Error|Exception|Exit): .+$", str(err), flags=re.M)
        first = causes[-1] if causes else (str(err).splitlines()[0] if str(err) else "")
        raise EngineError(f"the Ray engine failed: {type(err).__name__}: {first}") from err


def _records_table(records: Sequence, *, first: int):
    import pyarrow as pa

    return pa.table({"seq": pa.array(range(first, first + len(records)), pa.int64()),
                     "id_json": [json.dumps(r.id) for r in records],  # JSON keeps "7" and 7 apart
                     "text": [r.text for r in records]})


def _rows(batch) -> Iterator[dict]:
    """The rows of a scored batch (a pyarrow table), each with its per-token arrays as TokenStats:
    slices of the columns' flat value buffers, with no per-token Python objects."""
    from lmaudit.models.base import TokenStats

    plain = {k: batch.column(k).to_pylist() for k in batch.column_names if not k.startswith("t_")}
    flat = {}
    for f in STATS_FIELDS:
        col = batch.column("t_" + f).combine_chunks()
        flat[f] = (col.offsets.to_numpy(), col.values.to_numpy(zero_copy_only=False))
    for i in range(batch.num_rows):
        row = {k: v[i] for k, v in plain.items()}
        row["stats"] = None if row["cached"] or row["error"] else TokenStats(
            **{f: flat[f][1][flat[f][0][i]:flat[f][0][i + 1]].copy() for f in STATS_FIELDS})
        yield row


def _token_column(arrays: list[np.ndarray], dtype) -> Any:
    """Variable-length arrays as one Arrow list column (offsets plus one flat buffer)."""
    import pyarrow as pa

    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def records_datasource(source):
    """A Ray Data datasource reading ``source`` (a :class:`~lmaudit.data.RecordFile`) with lmaudit's
    reader (the class is made here: Ray is imported only when the engine is used)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class _RecordsDatasource(Datasource):
        """A :class:`~lmaudit.data.RecordFile` read by one sequential task with lmaudit's reader,
        in blocks of :data:`ROWS_PER_BLOCK` rows (line numbers and duplicate ids need file order)."""

        def __init__(self, source):
            super().__init__()
            self.source = dataclasses.replace(source, path=Path(source.path).resolve())

        def estimate_inmemory_data_size(self):
            return _size(self.source.path)

        def get_name(self):
            return "lmaudit_records"

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            source = self.source

            def read():
                batch, seq = [], 0
                for record in source:
                    batch.append(record)
                    if len(batch) == ROWS_PER_BLOCK:
                        yield _records_table(batch, first=seq)
                        seq, batch = seq + len(batch), []
                if batch:
                    yield _records_table(batch, first=seq)

            meta = BlockMetadata(num_rows=None, size_bytes=_size(source.path), input_files=[str(source.path)],
                                 exec_stats=None)
            return [ReadTask(read, meta)]

    return _RecordsDatasource(source)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load_worker_model(spec: dict, fingerprints: tuple[str, str]):
    import torch

    model = load_from_spec(spec)
    if str(spec.get("device")) == "cpu":
        torch.set_num_threads(1)  # one CPU per actor: more threads would only fight over it
    check_fingerprints(model, tuple(fingerprints), where=f"Ray worker on {socket.gethostname()}")
    return model


class _Scorer:
    """A Ray actor: one model copy, scoring batches of documents."""

    def __init__(self, spec: dict, fingerprints: tuple[str, str], policy: dict, batch_size: int, cached):
        import ray

        from lmaudit.models.base import ScoringPolicy

        self.model = _load_worker_model(spec, fingerprints)
        self.fingerprints = tuple(fingerprints)
        self.policy = ScoringPolicy(**policy)
        self.batch_size = batch_size
        self.cached = ray.get(cached) if cached is not None else frozenset()

    def __call__(self, batch):
        import pyarrow as pa

        from lmaudit.data import Record
        from lmaudit.scoring.cache import cache_key
        from lmaudit.scoring.score import score_records

        texts = batch.column("text").to_pylist()
        n = len(texts)
        policy = self.policy.to_dict()
        keys = [cache_key(model_fp=self.fingerprints[0], tokenizer_fp=self.fingerprints[1], policy=policy, text=t)
                for t in texts]
        todo = [i for i in range(n) if keys[i] not in self.cached]
        records = [Record(id=i, text=texts[i], source="", line=0) for i in todo]
        scores = dict(zip(todo, score_records(self.model, records, policy=self.policy, batch_size=self.batch_size)))
        out = {
            "seq": batch.column("seq"), "id_json": batch.column("id_json"), "key": pa.array(keys, pa.string()),
            "cached": pa.array([i not in scores for i in range(n)]),
            # A cached row's text goes back too: the driver rescores an entry it cannot use.
            "text": pa.array([texts[i] if i not in scores else "" for i in range(n)], pa.string()),
            "error": pa.array([(scores[i].error or "") if i in scores else "" for i in range(n)], pa.string()),
        }
        for k in ("n_text_tokens", "n_truncated", "n_windows"):
            out[k] = pa.array([getattr(scores[i], k) if i in scores else 0 for i in range(n)], pa.int64())
        for f in STATS_FIELDS:
            dtype = np.int32 if f == "token_ids" else np.float32
            out["t_" + f] = _token_column([getattr(scores[i].stats, f) if i in scores and scores[i].stats is not None
                                           else np.zeros(0, dtype) for i in range(n)], dtype)
        return pa.table(out)


class _Generator:
    """A Ray actor: one model copy, generating whole batches of prompts."""

    def __init__(self, spec: dict, fingerprints: tuple[str, str], config: dict, processors: list):
        from lmaudit.models.base import GenerationConfig

        self.model = _load_worker_model(spec, fingerprints)
        self.config = GenerationConfig(**config)
        self.processors = processors

    def __call__(self, batch: dict) -> dict:
        new = []
        for unit, prompts in zip(batch["unit"], batch["prompts"]):
            prompts = json.loads(prompts)
            # The local engine's batch `unit`: the same prompts, in the same order, seeded alike.
            config = dataclasses.replace(self.config, seed=self.config.seed + int(unit))
            out = self.model.generate(prompts, config, logits_processor=copy.deepcopy(self.processors) or None,
                                      batch_size=len(prompts))
            new.append(json.dumps(out))
        return {"rows": batch["rows"], "new": np.array(new, dtype=object)}
