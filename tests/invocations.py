"""Count the rows the model functions see inside the Python workers: the embedding, the index search (its input
and output) and the cross-encoder scoring. ``with counting(out_dir) as seen: ...`` wraps the three UDF factories
for the block (the wrappers travel to the workers by value); ``seen(kind)`` afterwards lists what each saw: row
keys with ``keys=True``, else one number per batch (cheap enough for a benchmark's millions of pairs)."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import typing
import uuid
from pathlib import Path
from typing import Callable, Iterator

KINDS = ("embed", "search", "search_out", "score")


def _counting(factory, out_dir: str, kind: str, keys: bool):
    def make(*args, **kwargs):
        inner = factory(*args, **kwargs)

        def record(name: str, rows: list) -> None:
            with open(os.path.join(out_dir, f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"), "w") as f:
                json.dump(rows if keys else [len(rows)], f)

        def counted(batches):
            def tap():
                for b in batches:
                    if kind == "search":
                        record(kind, [f"{i}|{s}" for i, s in zip(b["item_id"], b["sid"])])
                    elif kind == "score":
                        record(kind, [f"{k}|{t}" for k, _, t in zip(*b)])
                    else:
                        record(kind, [str(t) for t in b[0]])
                    yield b

            for out in inner(tap()):
                if kind == "search":
                    record("search_out", [f"{i}|{k}" for i, k in zip(out["item_id"], out["keyphrase_id"])])
                yield out

        # pandas_udf reads the body's type hints (iterator of series tuples): the inner body's, resolved in
        # its own module (they are strings there, under `from __future__ import annotations`)
        counted.__annotations__ = typing.get_type_hints(inner)
        return counted

    return make


@contextlib.contextmanager
def counting(out_dir: str | Path, keys: bool = True) -> Iterator[Callable[[str], list]]:
    """Wrap the model UDF factories while the block runs; yields ``seen(kind)`` (see the module doc)."""
    from pyspark import cloudpickle

    from kpspark.biencoder import embedder
    from kpspark.crossencoder import scorer
    from kpspark.retrieval import retriever

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patched = [(embedder, "make_embed_fn", "embed"), (retriever, "make_search_fn", "search"),
               (scorer, "make_score_fn", "score")]
    originals = [getattr(m, n) for m, n, _ in patched]
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        for (mod, name, kind), orig in zip(patched, originals):
            setattr(mod, name, _counting(orig, str(out), kind, keys))
        yield lambda kind: seen(out, kind)
    finally:
        for (mod, name, _), orig in zip(patched, originals):
            setattr(mod, name, orig)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def seen(out_dir: Path, kind: str) -> list:
    """What the ``kind`` function saw (keys, or per-batch row counts)."""
    rows: list = []
    for p in Path(out_dir).glob(f"{kind}-*"):
        rows += json.loads(p.read_text())
    return rows


def rows_seen(out_dir: Path, kind: str) -> int:
    """How many rows the ``kind`` function saw (either mode)."""
    got = seen(out_dir, kind)
    return sum(got) if got and isinstance(got[0], int) else len(got)
