"""A deterministic, **synthetic** sample marketplace with the biases the papers describe.

Pure numpy/pandas; the Spark wrapper (:func:`kpspark.sample.generate`) runs the same functions
per chunk in ``mapInPandas``, so 1k or 10M pairs come out identical for a given seed.

What it models:

* items in 8 categories, with brand, product type, model line, color and spec; titles mix them
  with seller noise (``"NEW"``, ``"Free Shipping"``), synonyms of the product type and, 20% of the
  time, no color (the text does not say everything about the item);
* keyphrases (buyer queries) enumerated from templates (``{brand} {ptype}``, ``{color} {ptype}``,
  ``{brand} {model}``...), with search volume that falls with specificity (head vs tail) and typos;
* **ground truth**: a keyphrase is relevant to an item when every attribute it names matches;
* a **search engine** relevance score that leans on token overlap (it passes some near misses
  such as ``red iphone`` for a blue one, and misses synonyms);
* **clicks only where search passed the pair** (middleman bias), with position bias and
  popularity, so clicks are strong positives and weak negatives;
* **human labels** on a sample, 4-level ratings with annotator noise, binarised.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from kpspark.rules import normalize_text
from kpspark.sample.catalog import CATALOG, MODEL_TEMPLATES, NOISE_WORDS, TEMPLATES

#: size name -> (items, candidate pairs per item, model lines per (brand, product type))
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (200, 10, 1),
    "small": (2_000, 12, 2),
    "medium": (20_000, 12, 4),
    "large": (200_000, 12, 8),
    "xl": (1_000_000, 10, 16),
}
CHUNK_ITEMS = 20_000
BASE_TS = pd.Timestamp("2026-10-01T00:00:00")
WINDOW = "2026-10"
_SYLLABLES = ["ka", "zen", "tro", "vi", "lo", "mar", "qu", "ex", "sol", "ra", "neo", "pix", "or", "tek", "lu", "vo"]
_ATTRS = ("ptype", "brand", "color", "spec", "model")


@dataclass(frozen=True)
class SampleSize:
    """Resolved size: number of items, candidates per item, model lines per (brand, product type)."""

    items: int
    candidates: int
    models: int

    @property
    def pairs(self) -> int:
        """Approximate number of candidate pairs."""
        return self.items * self.candidates


def resolve_size(size: str | int, models: int | None = None) -> SampleSize:
    """``"tiny"``..``"xl"`` or an item count (candidates 10, model lines grow with it)."""
    if isinstance(size, str) and size in SIZES:
        n, c, m = SIZES[size]
    else:
        try:
            n = int(size)
        except (TypeError, ValueError):
            raise ValueError(f"sample size must be one of {list(SIZES)} or a positive integer, got {size!r}") from None
        if n <= 0:
            raise ValueError(f"sample size must be positive, got {n}")
        c, m = 10, max(1, min(64, n // 60_000 + 1))
    return SampleSize(n, c, models if models is not None else m)


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _model_name(category: str, brand: str, ptype: str, j: int) -> str:
    h = int(hashlib.md5(f"{category}|{brand}|{ptype}".encode()).hexdigest(), 16)
    a, b = _SYLLABLES[h % 16], _SYLLABLES[(h >> 4) % 16]
    return f"{(a + b).capitalize()} {j + 1 + (h >> 8) % 7}"


def _typo(text: str, rng: np.random.Generator) -> str:
    if len(text) < 5:
        return text
    i = int(rng.integers(1, len(text) - 2))
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


@lru_cache(maxsize=8)
def keyphrase_universe(models: int, seed: int = 42) -> pd.DataFrame:
    """All keyphrases with their constraint attributes (None = not constrained).

    Columns: ``keyphrase_id, text, normalized, category, search_volume, ptype, brand, color, spec,
    model, n_constraints, typo``. Ids are dense and deterministic for ``(models, seed)``.
    """
    rows: list[dict[str, object]] = []
    seen: set[tuple[str, str]] = set()

    def add(cat: str, text: str, attrs: dict[str, str | None], typo: bool = False) -> None:
        norm = normalize_text(text)
        if (cat, norm) in seen:
            return
        seen.add((cat, norm))
        rows.append({"text": text, "normalized": norm, "category": cat, "typo": typo,
                     **{a: attrs.get(a) for a in _ATTRS}})

    for cat, spec in CATALOG.items():
        for ptype, _syn in spec["ptypes"]:  # type: ignore[attr-defined]
            for brand in spec["brands"]:  # type: ignore[attr-defined]
                for color in spec["colors"]:  # type: ignore[attr-defined]
                    for sp in spec["specs"]:  # type: ignore[attr-defined]
                        vals = {"ptype": ptype, "brand": brand, "color": color, "spec": sp}
                        for tmpl, fields in TEMPLATES:
                            add(cat, tmpl.format(**vals).lower(), {f: vals[f] for f in fields})
                for j in range(models):
                    model = _model_name(cat, brand, ptype, j)
                    for color in spec["colors"]:  # type: ignore[attr-defined]
                        for sp in spec["specs"]:  # type: ignore[attr-defined]
                            vals = {"ptype": ptype, "brand": brand, "color": color, "spec": sp, "model": model}
                            for tmpl, fields in MODEL_TEMPLATES:
                                add(cat, tmpl.format(**vals).lower(), {f: vals[f] for f in fields})
    df = pd.DataFrame(rows)
    rng = _rng(seed, "keyphrases", models)
    # Typo variants of 3% of keyphrases: same constraints, different text (buyers misspell).
    pick = rng.random(len(df)) < 0.03
    typos = df[pick].copy()
    typos["text"] = [_typo(t, rng) for t in typos["text"]]
    typos["normalized"] = typos["text"].map(normalize_text)
    typos["typo"] = True
    df = pd.concat([df, typos], ignore_index=True).drop_duplicates(["category", "normalized"])
    df["n_constraints"] = df[list(_ATTRS)].notna().sum(axis=1)
    noise = rng.normal(0.0, 0.6, len(df))
    df["search_volume"] = np.round(10 ** (5.2 - 1.1 * df["n_constraints"] + noise - 0.8 * df["typo"])).astype("int64")
    df = df.reset_index(drop=True)
    df.insert(0, "keyphrase_id", np.arange(1, len(df) + 1, dtype="int64"))
    return df


@lru_cache(maxsize=8)
def _lookup(models: int, seed: int) -> dict[tuple[str, str], int]:
    kp = keyphrase_universe(models, seed)
    return dict(zip(zip(kp["category"], kp["normalized"]), kp["keyphrase_id"]))


def items_chunk(seed: int, size: SampleSize, start: int, stop: int) -> pd.DataFrame:
    """Items ``start..stop-1`` with their latent attributes (columns beyond the ``items`` table:
    ptype, brand, color, spec, model, popularity)."""
    rng = _rng(seed, "items", start)
    cats = list(CATALOG)
    n = stop - start
    cat_idx = rng.choice(len(cats), size=n, p=np.linspace(1.6, 0.6, len(cats)) / np.linspace(1.6, 0.6, len(cats)).sum())
    rows = []
    for i in range(n):
        cat = cats[cat_idx[i]]
        spec = CATALOG[cat]
        ptypes = spec["ptypes"]  # type: ignore[assignment]
        pi = int(rng.integers(len(ptypes)))  # type: ignore[arg-type]
        ptype, syns = ptypes[pi]  # type: ignore[index]
        brand = str(rng.choice(spec["brands"]))  # type: ignore[arg-type]
        color = str(rng.choice(spec["colors"]))  # type: ignore[arg-type]
        sp = str(rng.choice(spec["specs"]))  # type: ignore[arg-type]
        model = _model_name(cat, brand, ptype, int(rng.integers(size.models)))
        ptype_word = ptype if rng.random() < 0.6 else str(rng.choice(syns))
        parts = [brand, model, ptype_word.title(), sp]
        if rng.random() < 0.8:
            parts.insert(int(rng.integers(1, len(parts) + 1)), color.title())
        if rng.random() < 0.5:
            parts.insert(0 if rng.random() < 0.5 else len(parts), str(rng.choice(NOISE_WORDS)))
        rows.append({
            "item_id": start + i + 1, "title": " ".join(parts), "category": cat,
            "seller_id": int(rng.integers(1, max(2, size.items // 20))),
            "price": round(float(spec["price"]) * float(rng.lognormal(0, 0.4)), 2),  # type: ignore[arg-type]
            "updated_at": BASE_TS + pd.Timedelta(seconds=start + i),
            "ptype": ptype, "brand": brand, "color": color, "spec": sp, "model": model,
            "popularity": float(rng.lognormal(0, 1.0)),
        })
    return pd.DataFrame(rows)


def _relevant(item: pd.Series, kp: pd.DataFrame) -> np.ndarray:
    ok = (kp["category"].to_numpy() == item["category"])
    for a in _ATTRS:
        col = kp[a].to_numpy()
        ok &= pd.isna(col) | (col == item[a])
    return ok


def _coverage(kp_norm: str, title_norm: str) -> float:
    t = set(title_norm.split())
    toks = kp_norm.split()
    return sum(w in t for w in toks) / max(1, len(toks))


def pairs_chunk(seed: int, size: SampleSize, start: int, stop: int) -> pd.DataFrame:
    """Candidate pairs of items ``start..stop-1`` with every signal.

    Columns: item_id, keyphrase_id, relevant, grade, search_score, search_label, position,
    impressions, clicks, sales, human_rating (NaN when unrated).
    """
    items = items_chunk(seed, size, start, stop)
    kp = keyphrase_universe(size.models, seed)
    by_cat = {c: g for c, g in kp.groupby("category")}
    rng = _rng(seed, "pairs", start)
    out = []
    for _, item in items.iterrows():
        g = by_cat[item["category"]]
        rel_mask = _relevant(item, g)
        rel_ids, irr_ids = g.index[rel_mask], g.index[~rel_mask]
        n_rel = min(len(rel_ids), int(rng.binomial(size.candidates, 0.45)))
        # near misses: same brand or same product type, so text overlap is high
        near = g.index[~rel_mask & ((g["brand"] == item["brand"]).to_numpy() | (g["ptype"] == item["ptype"]).to_numpy())]
        n_irr = size.candidates - n_rel
        n_near = min(len(near), int(round(n_irr * 0.7)))
        chosen = list(rng.choice(rel_ids, n_rel, replace=False)) if n_rel else []
        if n_near:
            chosen += list(rng.choice(near, n_near, replace=False))
        rest = n_irr - n_near
        if rest:
            if rng.random() < 0.3:  # a cross-category candidate
                chosen += list(rng.choice(kp.index[kp["category"] != item["category"]], rest, replace=False))
            else:
                chosen += list(rng.choice(irr_ids, min(rest, len(irr_ids)), replace=False))
        cand = kp.loc[sorted(set(chosen))]
        title_norm = normalize_text(item["title"])
        relevant = _relevant(item, cand).astype("int32")
        cover = np.array([_coverage(k, title_norm) for k in cand["normalized"]])
        # the search engine: token overlap + some semantics, noisy
        logit = 4.0 * (cover - 0.55) + 1.6 * (relevant - 0.5) + rng.normal(0, 0.9, len(cand))
        search_score = 1 / (1 + np.exp(-logit))
        search_label = (search_score >= 0.5).astype("int32")
        position = rng.integers(1, 11, len(cand))
        vol = cand["search_volume"].to_numpy()
        impressions = np.where(search_label == 1,
                               rng.poisson(np.minimum(5_000, 2 + vol / 200 * item["popularity"] / position ** 0.5)), 0)
        ctr = np.where(relevant == 1, 0.06, 0.006) / position ** 0.7
        clicks = rng.binomial(impressions, np.clip(ctr, 0, 1))
        buys = rng.binomial(clicks, np.where(relevant == 1, 0.08, 0.01))
        sales = buys * float(item["price"])
        grade = np.where(relevant == 1, np.where(cand["n_constraints"].to_numpy() >= 2, "exact", "relevant"),
                         "irrelevant")
        rated = rng.random(len(cand)) < 0.08
        noisy = rng.random(len(cand)) < 0.12
        truth_rating = np.where(relevant == 1, rng.choice([3, 4], len(cand)), rng.choice([1, 2], len(cand)))
        flip = np.where(truth_rating >= 3, truth_rating - 2, truth_rating + 2)
        rating = np.where(rated, np.where(noisy, flip, truth_rating), np.nan)
        out.append(pd.DataFrame({
            "item_id": np.full(len(cand), int(item["item_id"]), dtype="int64"),
            "keyphrase_id": cand["keyphrase_id"].to_numpy(dtype="int64"),
            "relevant": relevant, "grade": grade, "search_score": search_score.astype("float64"),
            "search_label": search_label, "position": position.astype("int32"),
            "impressions": impressions.astype("int64"), "clicks": clicks.astype("int64"),
            "sales": sales.astype("float64"), "human_rating": rating.astype("float64"),
        }))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def chunk_bounds(s: SampleSize) -> list[tuple[int, int]]:
    """Item ranges generated together; they depend on the size only, so output never depends on
    how Spark partitions the work."""
    per = CHUNK_ITEMS if s.items > CHUNK_ITEMS else max(1, s.items // 16)
    return [(a, min(a + per, s.items)) for a in range(0, s.items, per)]


def generate_pandas(size: str | int = "tiny", seed: int = 42) -> dict[str, pd.DataFrame]:
    """The whole marketplace as pandas DataFrames keyed by table name (small sizes only)."""
    s = resolve_size(size)
    bounds = chunk_bounds(s)
    items = pd.concat([items_chunk(seed, s, a, z) for a, z in bounds], ignore_index=True)
    pairs = pd.concat([pairs_chunk(seed, s, a, z) for a, z in bounds], ignore_index=True)
    return to_tables(items, pairs, keyphrase_universe(s.models, seed))


HUMAN_MAPPING = "4:excellent,3:good->1; 2:fair,1:bad->0"


def to_tables(items: pd.DataFrame, pairs: pd.DataFrame, kp: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Project the generator's wide frames onto the lakehouse tables."""
    rated = pairs[pairs["human_rating"].notna()]
    clicked = pairs[pairs["impressions"] > 0]
    return {
        "items": items[["item_id", "title", "category", "seller_id", "price", "updated_at"]],
        "keyphrases": kp[["keyphrase_id", "text", "normalized", "category", "search_volume"]],
        "pairs": pairs[["item_id", "keyphrase_id"]].assign(source="sample_recommender"),
        "ground_truth": pairs[["item_id", "keyphrase_id", "relevant", "grade"]],
        "search_relevance": pairs[["item_id", "keyphrase_id"]].assign(
            score=pairs["search_score"], label=pairs["search_label"]),
        "clicks": clicked[["item_id", "keyphrase_id", "impressions", "clicks", "sales"]].assign(window=WINDOW),
        "human_labels": rated[["item_id", "keyphrase_id"]].assign(
            rating=rated["human_rating"], label=(rated["human_rating"] >= 3).astype("int32"),
            source="sample_annotators", mapping=HUMAN_MAPPING),
    }
