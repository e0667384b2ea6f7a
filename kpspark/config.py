"""Configuration: frozen dataclasses whose defaults are the defaults, YAML files merged on top in order,
``--set key=value`` overrides; validated by pydantic (typed, unknown keys refused).

No Spark here. ``load_config("conf/local.yaml", overrides=["sample.size=small"])`` returns a
:class:`Config`; every job takes ``--conf`` (repeatable) and ``--set`` through :func:`parse_job_args`.
``docs/config.md`` is rendered from this file (``python docs/render.py``).

Examples
--------
>>> cfg = load_config(overrides=["sample.seed=7", "spark.master=local[1]", "cross_encoder.lr=5e-5"])
>>> cfg.sample.seed, cfg.spark.master, cfg.cross_encoder.lr
(7, 'local[1]', 5e-05)
"""
from __future__ import annotations

import argparse
import collections.abc
import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kpspark.errors import ConfigError



@dataclass(frozen=True)
class SparkConfig:
    """How :func:`kpspark.session.get_spark` builds a session."""

    master: str = "local[*]"
    # Spark Connect: sc://host:port (a Connect server; Databricks shared/serverless) or local[N] (a local Connect
    # server started with this session's jars and confs); "" = a classic session. Jobs: --remote URL
    remote: str = ""
    app_name: str = "kpspark"
    jars_dir: str = ".cache/jars"
    with_nlp: bool = False
    delta_provided: bool = False  # the cluster ships Delta already (Databricks): don't add jars
    # where frames computed once and read several times are kept (reliable checkpoints: they survive a
    # lost executor); "" = ``<lakehouse root>/_checkpoints/spark``, "none" = keep them cached instead
    checkpoint_dir: str = ""
    conf: Mapping[str, str] = field(default_factory=lambda: {
        "spark.sql.shuffle.partitions": "8", "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC"})


@dataclass(frozen=True)
class LakehouseConfig:
    """Where the Delta tables live: a root folder (``path`` tables) or a catalog schema (``name`` tables)."""

    root: str = "lakehouse"
    schema: str = ""  # when set, tables are ``<schema>.<table>`` in the metastore instead of paths
    # logical name (kpspark.data.schemas) -> folder or table name; a table not listed uses its logical name
    tables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MlflowConfig:
    """Tracking/registry store; ``MLFLOW_TRACKING_URI`` overrides ``tracking_uri``."""

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    # the model registry, when it is not the tracking store (databricks-uc: Unity Catalog); "" = the tracking URI
    registry_uri: str = ""
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "kpspark"  # on Databricks a workspace path (/Shared/kpspark, /Users/<you>/kpspark)


@dataclass(frozen=True)
class ModelsConfig:
    """Registered model names and the aliases jobs resolve."""

    baseline: str = "kpspark-jaccard-baseline"
    cross_encoder: str = "kpspark-cross-encoder"
    bi_encoder: str = "kpspark-bi-encoder"
    judge: str = "kpspark-judge"  # the fine-tuned LLM judge (``llm.model: finetuned`` labels with it)
    serving_alias: str = "champion"
    candidate_alias: str = "challenger"


@dataclass(frozen=True)
class QualityConfig:
    """Input validation limits applied by every table write."""

    max_title_chars: int = 2000
    max_keyphrase_chars: int = 200


@dataclass(frozen=True)
class ClickPositiveConfig:
    """Which click-log pairs are click positives (:func:`kpspark.rules.click_positives`; TJ section 3.1.2)."""

    min_impressions: int = 30
    min_clicks: int = 1
    min_ctr: float = 0.001  # the paper's "min CTR of 0.1", read as 0.1% (10% would contradict its 1-click floor)


@dataclass(frozen=True)
class SampleConfig:
    """The synthetic sample marketplace."""

    size: str = "small"  # tiny | small | medium | large | xl, or an integer number of items
    seed: int = 42


@dataclass(frozen=True)
class BatchConfig:
    """Micro-batch sizes of the inference stages."""

    llm: int = 0  # 0 = the judge backend's default (vllm 256, openai 32, transformers 16)
    cross_encoder: int = 16
    embedder: int = 32


@dataclass(frozen=True)
class LlmConfig:
    """The LLM judge and the labeling job (``jobs/label_pairs.py``)."""

    backend: str = "transformers"  # vllm | openai | transformers (fake: unit tests only)
    model: str = "smollm2"  # smollm2 (the packaged SmolLM2-135M-Instruct CPU teacher) | finetuned (models.judge at the serving alias, trained by train_judge) | a model folder, id or URI
    prompt_version: str = "v1"  # v1 | v2 (compact, title first) | v0; a fine-tuned judge labels with the template it was trained on
    prompt_path: str = ""
    threshold: float = 0.5
    strategy: str = "uniform"  # uniform | stratified (by category) | all
    sample_size: int = 200  # pairs to label per run (<= 0: all unlabeled pairs)
    chunk_pairs: int = 100  # pairs committed per Delta MERGE (a crash loses at most one chunk)
    max_error_rate: float = 0.25  # a run whose share of errored rows passes this fails (rows kept for a retry)
    options: Mapping[str, object] = field(default_factory=dict)  # backend options; never secrets


@dataclass(frozen=True)
class JudgeConfig:
    """Fine-tuning the LLM judge on human labels (``jobs/train_judge.py``; the paper's fine-tuned judge): LoRA
    adapters on the top layers of ``base``, trained on the yes/no answer of ``llm.prompt_version``'s prompt for the
    human-rated pairs of training items (the held-out items are the evaluation's), registered as ``models.judge``."""

    base: str = "smollm2"  # the causal LM to fine-tune: smollm2 | a HF folder | folder::file.gguf | a hub id
    max_pairs: int = 2000  # human-rated pairs of training items (a sample by pair hash; <= 0: all)
    eval_pairs: int = 400  # held-out pairs the general and the fine-tuned judge are compared on (κ, AUC)
    epochs: float = 1.0
    lr: float = 1e-3  # LoRA on a 135M model: 1e-3 (Home Depot, 1,500 pairs: κ 0.23 at 1e-3 on every layer; ~0 at 3e-4 on the top 10)
    batch_size: int = 16
    lora_r: int = 16
    lora_alpha: int = 32
    lora_layers: int = 0  # 0 = every decoder layer; N = only the top N (the backward pass stops below them: cheaper, and it learns little)
    bf16: bool = True  # bfloat16 autocast while training (weights stay float32): ~1.7x faster on CPUs with AVX512-BF16
    seed: int = 0


@dataclass(frozen=True)
class CrossEncoderTraining:
    """Hyperparameters of one cross-encoder training run; ``CrossEncoderEstimator``'s Params are declared from
    these (:mod:`kpspark.params`)."""

    init: str = "bert-tiny"  # bert-tiny (the paper's shape, from scratch) | minilm1..minilm6 (first N layers of MiniLM) | a HF folder or hub id
    max_length: int = 64
    epochs: float = 8.0  # TJ: 8 epochs
    lr: float = 0.0  # 0 = the init's default: 1e-3 for fresh weights (bert-tiny), 5e-5 for pretrained ones
    batch_size: int = 64
    eval_steps: int = 100
    patience: int = 3  # early stopping: evaluations without a better validation loss
    soft_labels: bool = False  # train on P(yes) instead of 0/1
    warmup_ratio: float = 0.1  # share of the training steps the learning rate warms up over
    quantization: str = "dynamic"  # int8 export: dynamic (fastest) | static (calibrated: a score ignores its batch-mates)
    teacher: str = ""  # '' = train on the labels | an init or model folder: a cross-encoder trained on the labels first, its logits then distilled into `init` (MSE)
    teacher_epochs: float = 1.0  # 0 = `teacher` is already a trained cross-encoder folder: distil from it as it is
    teacher_lr: float = 0.0  # 0 = the teacher init's default (as `lr`)


@dataclass(frozen=True)
class CrossEncoderConfig(CrossEncoderTraining):
    """Training/export of the cross-encoder assistant (``jobs/train_cross_encoder.py``)."""

    recipe: str = "click_llm"  # search | click_search | click_llm | click_llm_neg | llm | human
    max_train_pairs: int = 200_000
    precision: str = "int8"  # int8 | fp32, for scoring
    judge_model: str = ""  # restrict LLM labels to one judge ('' = any)


@dataclass(frozen=True)
class BiEncoderTraining:
    """Hyperparameters of one bi-encoder training run; ``BiEncoderEstimator``'s Params are declared from these
    (the tasks and their weights come from the recipe and ``bi_encoder.weights``)."""

    init: str = "minilm6"  # minilm6 (all-MiniLM-L6-v2, the student) | minilm2 (its first 2 layers; fast)
    dims: tuple[int, ...] = (384, 256, 128, 64)  # Matryoshka dims trained (each task loss summed over them)
    max_length: int = 64
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 32
    sampler: str = "round_robin"  # round_robin | proportional
    eval_steps: int = 50
    patience: int = 3
    quantization: str = "dynamic"  # int8 export: dynamic (fastest) | static (calibrated: ignores its batch-mates)


@dataclass(frozen=True)
class BiEncoderConfig(BiEncoderTraining):
    """Training/export/serving of the bi-encoder student (``jobs/train_bi_encoder.py``, ``jobs/embed.py``)."""

    recipe: str = "click_search_distill"  # click | click_search | click_search_distill
    weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0, "search": 1.0, "distill": 1.0})
    dim: int = 128  # Matryoshka dim served (embeddings tables, retrieval)
    max_pairs_per_task: int = 20_000
    precision: str = "int8"  # int8 | fp32, for embedding
    recall_k: tuple[int, ...] = (10, 50, 100)
    relevant_score: float = 0.5  # CE score at or above which a pair counts as relevant in recall@k
    teacher: str = ""  # model_name in pair_scores to distill from ('' = models.cross_encoder)


@dataclass(frozen=True)
class RetrievalConfig:
    """De-duplication, the sharded ANN index and the relevance filter (``jobs/recommend.py``)."""

    k: int = 50  # ANN candidates per item
    top_n: int = 20  # recommendations kept per item after the relevance filter
    shard_by: str = "category"  # category | hash
    num_hash_shards: int = 4
    fallback: str = "all"  # items of categories unseen at index time: all (search every shard) | none
    index_kind: str = "auto"  # auto (flat up to exact_max, ivf above) | flat | hnsw | ivf
    exact_max: int = 20_000
    ef_search: int = 128
    nprobe: int = 16
    threshold: float = 0.5  # CE score kept when calibrate is false (or no click has a CE score)
    calibrate: bool = True  # threshold = the CE score that keeps click_retention of the clicked pairs
    click_retention: float = 0.95
    per_category: bool = True  # a threshold per category with enough click positives (the rest: the global one)
    min_category_positives: int = 50
    plural: bool = True  # de-duplication: plural/singular variants share a group
    word_order: bool = True  # de-duplication: word-order variants share a group


@dataclass(frozen=True)
class EvaluationConfig:
    """The offline evaluation report and the promotion gate (``jobs/calibrate_evaluate.py``)."""

    recipes: tuple[str, ...] = ("search", "click_search", "click_llm", "llm")  # CE recipes compared
    baseline: str = "search"  # the production row of the table (TJ: the search-trained model); or jaccard
    train_missing: bool = True  # train (and register) recipes with no registered version yet
    weighting: str = "clicks"  # clicks (the paper's "95% of clicks") | pairs: how the threshold counts clicks
    holdout: bool = True  # evaluate on the estimators' held-out items only (their validation fold)
    max_pairs: int = 50_000  # evaluation pairs sampled (by hash) from the segment and from the click log
    output_dir: str = "reports"  # HTML + PNGs, also logged to MLflow
    judge_sample: int = 0  # final recommendations judged by the LLM (0 = skip; the CPU judge is slow)
    judge_prompt: str = "v0"  # prompt version of that judgment: not the training judge's (self-enhancement bias)
    judge_model: str = ""  # the model of that judgment ('' = llm.model; a fine-tuned judge's base model when llm.model is finetuned)
    # gate: metric -> largest allowed drop of the challenger vs the champion (absolute, on the row's values)
    gate: Mapping[str, float] = field(default_factory=lambda: {"auc_truth": 0.01, "sales_kept": 0.02,
                                                                "search_pass_rate": 0.02})


@dataclass(frozen=True)
class SourceConfig:
    """One input of ``kpspark load``: a file, folder or table, its columns mapped to kpspark's by name.

    A file or folder is csv, parquet or json (a ``.zip`` is extracted); ``format: table`` reads a Spark / Unity
    Catalog table."""

    path: str = ""  # '' = this source is not loaded
    format: str = "csv"  # csv | parquet | json | table
    columns: Mapping[str, str] = field(default_factory=dict)  # kpspark column -> source column (absent: same name)
    options: Mapping[str, str] = field(default_factory=dict)  # reader options (encoding, sep, ...)
    hash_ids: bool = False  # item ids that are strings (SKUs): item_id = xxhash64 of the string
    relevant_at: float = 1.0  # rated pairs: rating >= relevant_at -> label 1, else 0
    name: str = "user"  # rated pairs: their human_labels.source


@dataclass(frozen=True)
class LoadConfig:
    """Your own data into the lakehouse (``kpspark load``): each source with a ``path`` is loaded.

    Rated pairs (``query, title[, item_id, category], rating``) fill items, keyphrases, human_labels and pairs;
    the others fill their table. Where a source has a ``query`` instead of a ``keyphrase_id``, the id is the one
    rule's (xxhash64 of the normalized text)."""

    rated_pairs: SourceConfig = field(default_factory=SourceConfig)  # query, title, rating[, item_id, category]
    items: SourceConfig = field(default_factory=SourceConfig)  # item_id, title[, category, seller_id, price]
    keyphrases: SourceConfig = field(default_factory=SourceConfig)  # text[, keyphrase_id, category, search_volume]
    clicks: SourceConfig = field(default_factory=SourceConfig)  # item_id, query, clicks[, impressions, sales, window]
    search_relevance: SourceConfig = field(default_factory=SourceConfig)  # item_id, query, label[, score]


@dataclass(frozen=True)
class StreamingConfig:
    """The near-real-time job (``jobs/streaming.py``): item create/revise events from ``items``' Change Data Feed."""

    checkpoint: str = ""  # '' = <lakehouse.root>/_checkpoints/items_stream
    trigger: str = "auto"  # auto (processingTime; availableNow over Spark Connect, all serverless allows) | processingTime (a long-running query) | availableNow (drain what is there, stop)
    interval: str = "1 minute"  # processingTime trigger interval
    max_files_per_trigger: int = 100  # Delta commits' files read per micro-batch
    query_name: str = "kpspark-items-nrt"  # with the query id kept in its checkpoint, the MERGE's idempotency app id (`<name>:<id>`; batch id = version)


@dataclass(frozen=True)
class Config:
    """The whole configuration; sections mirror the YAML files."""

    spark: SparkConfig = field(default_factory=SparkConfig)
    lakehouse: LakehouseConfig = field(default_factory=LakehouseConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    click_positive: ClickPositiveConfig = field(default_factory=ClickPositiveConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    cross_encoder: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)
    bi_encoder: BiEncoderConfig = field(default_factory=BiEncoderConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    load: LoadConfig = field(default_factory=LoadConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-serializable)."""
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, str]:
        """Flattened ``section.key`` -> string, e.g. for MLflow params."""
        return {k: str(v) for k, v in _flatten(self.to_dict()).items()}


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _mapping_field(cls: Any, name: str) -> bool:
    hint = typing.get_type_hints(cls).get(name)
    return typing.get_origin(hint) in (Mapping, collections.abc.Mapping, dict)


def _section(cls: Any, name: str) -> Any:
    hint = typing.get_type_hints(cls).get(name) if dataclasses.is_dataclass(cls) else None
    return hint if dataclasses.is_dataclass(hint) else None


def _apply_override(tree: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override must look like key.sub=value, got {item!r}")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override has an empty key: {item!r}")
    # Mapping-valued fields (spark.conf, lakehouse.tables) take the rest of the key whole:
    # --set spark.conf.spark.sql.shuffle.partitions=2
    cls: Any = Config
    for i, p in enumerate(parts[:-1]):
        if cls is not None and _mapping_field(cls, p):
            parts = parts[: i + 1] + [".".join(parts[i + 1:])]
            break
        cls = _section(cls, p)
    value = yaml.safe_load(raw) if raw.strip() else ""
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def _validate(tree: Mapping[str, Any]) -> Config:
    """The typed :class:`Config` of a plain tree (pydantic, lax mode: ``"5e-5"`` is a float, ``7`` a string
    where a string is expected); an unknown key or a value of the wrong type is a :class:`ConfigError`
    naming the key."""
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    strict_keys = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    for cls in _sections(Config):
        cls.__pydantic_config__ = strict_keys  # type: ignore[attr-defined]
    try:
        return TypeAdapter(Config).validate_python(_string_maps(Config, tree))
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
                section = _section_at(err["loc"][:-1])
                known = sorted(f.name for f in dataclasses.fields(section)) if section else []
                msgs.append(f"unknown config key {where!r}; known there: {known}")
            else:
                msgs.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("; ".join(msgs)) from None


def _string_maps(cls: Any, tree: Any) -> Any:
    """``tree`` with the values of string-valued mappings (``spark.conf``) as Spark writes them: YAML's
    ``false`` -> ``"false"``, ``8`` -> ``"8"``."""
    if not isinstance(tree, Mapping) or not dataclasses.is_dataclass(cls):
        return tree
    hints = typing.get_type_hints(cls)
    out = dict(tree)
    for name, value in tree.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint):
            out[name] = _string_maps(hint, value)
        elif _mapping_field(cls, name) and typing.get_args(hint)[1:] == (str,) and isinstance(value, Mapping):
            out[name] = {k: str(v).lower() if isinstance(v, bool) else v for k, v in value.items()}
    return out


def _sections(cls: Any) -> list[Any]:
    out = [cls]
    for f in dataclasses.fields(cls):
        sub = _section(cls, f.name)
        if sub is not None:
            out += _sections(sub)
    return out


def _section_at(loc: Sequence[Any]) -> Any:
    cls: Any = Config
    for p in loc:
        cls = _section(cls, str(p))
    return cls


def templates() -> dict[str, Path]:
    """The config templates shipped in the package (``kpspark/conf/*.yaml``; the checkout's ``conf/`` links to
    them): ``local``, ``cluster``, ``databricks``."""
    from importlib import resources

    folder = Path(str(resources.files("kpspark") / "conf"))
    return {f.stem: f for f in sorted(folder.glob("*.yaml"))}


def conf_file(p: str | os.PathLike[str]) -> Path:
    """A config file: ``p`` when it exists, else the packaged template it names (``local``, ``local.yaml`` or
    ``conf/local.yaml``, so the checkout's paths work from an installed package too)."""
    path = Path(p)
    if path.exists():
        return path
    known = templates()
    if path.parts[:-1] in ((), ("conf",)) and path.suffix in ("", ".yaml", ".yml") and path.stem in known:
        return known[path.stem]
    raise ConfigError(f"config file not found: {path} (the packaged templates: {', '.join(known)})")


def load_config(*paths: str | os.PathLike[str], overrides: Sequence[str] | Mapping[str, Any] = ()) -> Config:
    """The defaults (the dataclasses above: each setting is declared once, there), then YAML files merged
    left to right (mappings such as ``spark.conf`` merge key by key), then ``overrides``
    (``["a.b=1"]`` or ``{"a.b": 1}``).

    Unknown keys and wrongly typed values raise :class:`ConfigError` naming the key.
    """
    tree: dict[str, Any] = Config().to_dict()
    for p in paths:
        path = conf_file(p)
        with path.open() as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must hold a mapping at the top level")
        tree = _deep_merge(tree, data)
    items = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
             for k, v in overrides.items()] if isinstance(overrides, Mapping) else list(overrides)
    for item in items:
        _apply_override(tree, item)
    return _validate(tree)


def parse_job_args(argv: Sequence[str] | None = None, description: str = "", extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> tuple[Config, argparse.Namespace]:
    """Parse ``--conf FILE`` (repeatable) and ``--set key=value`` (repeatable) plus job flags."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", action="append", default=[], help="YAML config file (repeatable, merged in order)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set sample.size=tiny")
    parser.add_argument("--remote", default="", metavar="URL",
                        help="run over Spark Connect: sc://host:port, or local[N] for a local Connect server")
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *([f"spark.remote={args.remote}"] if args.remote else [])]
    return load_config(*args.conf, overrides=overrides), args
