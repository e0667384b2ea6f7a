"""How much of a cross-encoder teacher's judgement the served 2-layer shape keeps, recipe by recipe, on Home Depot.

The chain's served cross-encoder (2 layers) ranks the keyphrases of one item worse than the zero-shot bi-encoder,
while its MiniLM-L6 teacher ranks them better (``bench/results/homedepot_chain.json``). This script asks which
distillation recipe closes that gap, on one split and one teacher:

* items split 80/20 by a hash of the product id; the held-out rows are ``--test-pairs`` rated pairs of the 20%;
* the teacher: the packaged all-MiniLM-L6-v2 trained as a cross-encoder on ``--labels`` human-labeled training
  pairs (the library's trainer, as the chain trains it);
* each student learns the teacher's logits (the library's ``MSELoss`` distillation unless noted) from a different
  transfer set or init: the labeled pairs themselves; ``--transfer`` unlabeled training pairs; each of
  ``--items`` training items with its ``--candidates`` nearest search terms by zero-shot cosine (what a production
  chain scores: an item's candidate keyphrases), with plain MSE and with MSE plus a *within-item* term (the
  squared error of the item-centred logits, so the student learns how the teacher orders one item's keyphrases,
  not only the level of each pair); the ``minilm2`` init (the first 2 pretrained layers, 384 wide); and the
  teacher's own first and last layers as a 2-layer init.

Every row: pooled AUC, mean AUC within a search term and within a product (held-out human labels), the Pearson
correlation with the teacher on the validation rows, and training seconds. Writes
``bench/results/homedepot_served_shape.json``; exits 0 with a message when the data is absent. About 45 minutes on
2 cores; a rerun in the same ``--work`` reuses its teacher and candidate set (the teacher row's seconds then count
its scoring only).

    python bench/eval_homedepot_served_shape.py [--labels 3000] [--transfer 20000] [--items 3000] [--candidates 15]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import HERE, REPO, homedepot_absent, homedepot_data, machine_info, write_result

VIEWS = ("auc", "auc_within_keyphrase", "auc_within_item")


def split(test_pairs: int):
    """(shuffled training pairs, ``test_pairs`` held-out pairs) of Home Depot, items split 80/20 by a hash."""
    import pandas as pd

    from kpspark.data import loaders

    raw = pd.read_csv(loaders.HOMEDEPOT_SHARED, encoding="latin-1")
    relevant = (raw.relevance >= loaders.HOMEDEPOT_RELEVANT_AT).astype(int)
    df = pd.DataFrame({"item_id": raw.product_uid, "keyphrase": raw.search_term.str.lower(), "category": None,
                       "title": raw.product_title, "label": relevant})
    held = pd.util.hash_pandas_object(df.item_id, index=False).to_numpy() % 5 == 0
    return df[~held].sample(frac=1, random_state=0), df[held].sample(test_pairs, random_state=1)


def candidates(train, n_items: int, k: int, teacher_dir: Path, max_length: int, st):
    """``n_items`` training items, each with its own search terms and its ``k`` nearest training search terms by
    the zero-shot cosine of ``st`` (all-MiniLM-L6-v2), scored by the teacher (column ``t``)."""
    import numpy as np
    import pandas as pd

    from kpspark.crossencoder import train as T

    items = train.drop_duplicates("item_id").iloc[:n_items][["item_id", "title"]]
    terms = train.keyphrase.drop_duplicates().tolist()
    et = st.encode(terms, batch_size=256, normalize_embeddings=True, show_progress_bar=False)
    ei = st.encode(items.title.tolist(), batch_size=256, normalize_embeddings=True, show_progress_bar=False)
    top = np.argsort(-(ei @ et.T), axis=1)[:, :k]
    own = train[train.item_id.isin(items.item_id)].groupby("item_id").keyphrase.apply(list)
    rows = []
    for (iid, title), nn in zip(items.itertuples(index=False), top):
        ks = list(dict.fromkeys(own.get(iid, []) + [terms[j] for j in nn]))[:k + 2]
        rows += [(iid, kp, None, title) for kp in ks]
    out = pd.DataFrame(rows, columns=["item_id", "keyphrase", "category", "title"])
    out["t"] = T.ce_logits(teacher_dir, out, max_length)
    return out


def grouped_distil(transfer, out: Path, within: float, epochs: int, lr: float, max_length: int, seed: int = 0,
                   items_per_batch: int = 4) -> Path:
    """Distil the teacher logits of ``transfer`` (item-grouped candidates) into a fresh bert-tiny: batches of whole
    items, loss MSE + ``within`` x MSE of the item-centred logits. Returns the model folder."""
    import numpy as np
    import pandas as pd
    import torch
    import transformers

    from kpspark.crossencoder import train as T
    from kpspark.crossencoder.text import pair_texts

    transformers.set_seed(seed)
    init = T.init_model("bert-tiny", out / "init")
    tok = transformers.AutoTokenizer.from_pretrained(init)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(init)
    model.train()
    groups = [g for _, g in transfer.groupby("item_id")]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * (len(groups) // items_per_batch)
    sched = transformers.get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(groups))
        for s in range(0, len(order) - items_per_batch + 1, items_per_batch):
            sub = pd.concat([groups[i] for i in order[s:s + items_per_batch]])
            a, b = pair_texts(sub.keyphrase, sub.category, sub.title)
            logits = model(**tok(a, b, truncation=True, max_length=max_length, padding=True,
                                 return_tensors="pt")).logits.squeeze(-1)
            t = torch.tensor(sub.t.to_numpy(), dtype=torch.float32)
            loss = ((logits - t) ** 2).mean()
            if within:
                gid = torch.tensor(pd.factorize(sub.item_id)[0])
                per_item = [((logits[gid == g] - logits[gid == g].mean()) - (t[gid == g] - t[gid == g].mean()))
                            .pow(2).mean() for g in range(items_per_batch)]
                loss = loss + within * torch.stack(per_item).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return out / "model"


def truncated(teacher_dir: Path, layers: tuple[int, ...], out: Path) -> Path:
    """The teacher with only ``layers`` of its encoder (and its head) kept, as an init folder."""
    import torch
    import transformers

    m = transformers.AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    m.bert.encoder.layer = torch.nn.ModuleList([m.bert.encoder.layer[i] for i in layers])
    m.config.num_hidden_layers = len(layers)
    m.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=3000, help="human-labeled pairs the teacher trains on")
    ap.add_argument("--validation", type=int, default=600)
    ap.add_argument("--transfer", type=int, default=20000, help="unlabeled training pairs of the transfer rows")
    ap.add_argument("--items", type=int, default=3000, help="training items of the candidate transfer set")
    ap.add_argument("--candidates", type=int, default=15, help="nearest search terms per item")
    ap.add_argument("--test-pairs", type=int, default=6000)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--work", default=str(REPO / ".cache" / "eval-homedepot" / "served_shape"))
    ap.add_argument("--out", default=str(HERE / "results" / "homedepot_served_shape.json"))
    args = ap.parse_args()
    if homedepot_absent():
        return 0
    import numpy as np
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

    from kpspark.config import CrossEncoderTraining
    from kpspark.crossencoder import train as T
    from kpspark.crossencoder.text import pair_texts
    from kpspark.evaluation.metrics import frame_aucs

    torch.set_num_threads(2)
    work = Path(args.work)
    t_start = time.time()
    train, test = split(args.test_pairs)
    labeled, val = train.iloc[:args.labels], train.iloc[args.labels:args.labels + args.validation]
    rows: dict[str, dict] = {}

    def measure(name: str, model_dir: Path | None, seconds: float, scores=None, val_scores=None) -> None:
        if scores is None:
            scores, val_scores = (T.ce_logits(model_dir, pdf, args.max_length) for pdf in (test, val))
        r = {k: round(float(v), 4) for k, v in frame_aucs(test, "label", scores, "auc").items()}
        if val_scores is not None and name != "teacher":
            r["pearson_with_teacher_val"] = round(float(np.corrcoef(val_scores, t_val)[0, 1]), 4)
        rows[name] = {**r, "seconds": round(seconds, 1)}
        print(name, rows[name], flush=True)

    t0 = time.time()
    teacher_dir = work / "teacher" / "model"
    if not (teacher_dir / "config.json").is_file():  # a rerun in the same --work keeps the (seeded) teacher
        T.train_cross_encoder(labeled, val, work / "teacher", CrossEncoderTraining(
            init="minilm6", lr=3e-5, epochs=2.0, batch_size=32, eval_steps=200, max_length=args.max_length))
    t_val = T.ce_logits(teacher_dir, val, args.max_length)
    measure("teacher", teacher_dir, time.time() - t0)

    st = SentenceTransformer(str(T.minilm_dir()), device="cpu")
    a, b = pair_texts(test.keyphrase, test.category, test.title)
    ea, eb = (st.encode(x, batch_size=256, normalize_embeddings=True, show_progress_bar=False) for x in (a, b))
    measure("zero-shot all-MiniLM-L6-v2 cosine", None, 0.0, scores=(ea * eb).sum(1))

    transfer = train.iloc[:args.transfer]
    t_transfer = T.ce_logits(teacher_dir, transfer, args.max_length)
    cached = work / f"candidates_{args.items}_{args.candidates}.parquet"
    if not cached.is_file():
        candidates(train, args.items, args.candidates, teacher_dir, args.max_length, st).to_parquet(cached)
    cand = pd.read_parquet(cached)

    def fit(name: str, init: str, pdf, targets, epochs: float, lr: float, distil: bool = True) -> None:
        """Train ``init`` on ``targets`` (teacher logits with MSE, else labels with BCE) and measure it."""
        cfg = CrossEncoderTraining(init=init, lr=lr, epochs=epochs, batch_size=32, eval_steps=200,
                                   max_length=args.max_length, patience=4)
        t0 = time.time()
        res = T._fit(init, lr, epochs, cfg, T._dataset(pdf, targets), T._dataset(val, t_val if distil else val.label),
                     work / f"student_{len(rows)}", 0, distil=distil)
        measure(name, res["dir"], time.time() - t0)

    n_lab, n_tr, n_cand = f"{len(labeled):,}", f"{len(transfer):,}", f"{len(cand):,}"
    fit(f"bert-tiny, human labels only ({n_lab} pairs)", "bert-tiny", labeled, labeled.label, 6.0, 1e-3,
        distil=False)
    fit(f"bert-tiny <- teacher, the {n_lab} labeled pairs", "bert-tiny", labeled, T.ce_logits(
        teacher_dir, labeled, args.max_length), 6.0, 1e-3)
    fit(f"bert-tiny <- teacher, {n_tr} unlabeled pairs", "bert-tiny", transfer, t_transfer, 3.0, 1e-3)
    for name, within in ((f"bert-tiny <- teacher, {args.items:,} items x candidates ({n_cand} pairs)", 0.0),
                         (f"bert-tiny <- teacher, {args.items:,} items x candidates ({n_cand} pairs), "
                          "+ within-item term", 1.0)):
        t0 = time.time()
        measure(name, grouped_distil(cand, work / f"grouped_{within:g}", within, 8, 1e-3, args.max_length),
                time.time() - t0)
    fit(f"minilm2 (384 wide) <- teacher, {n_tr} unlabeled pairs", "minilm2", transfer, t_transfer, 2.0, 1e-4)
    init = truncated(teacher_dir, (0, 5), work / "truncated_init")
    fit(f"teacher's layers 1 and 6 (384 wide) <- teacher, {n_tr} unlabeled pairs", str(init), transfer,
        t_transfer, 2.0, 1e-4)

    table = ["| model | pooled AUC | within a search term | within a product | Pearson with teacher | seconds |",
             "|---|---|---|---|---|---|"]
    table += [f"| {k} | " + " | ".join(f"{v[x]:.3f}" for x in VIEWS) + f" | "
              f"{v.get('pearson_with_teacher_val', float('nan')):.2f} | {v['seconds']:.0f} |" for k, v in rows.items()]
    write_result(args.out, {
        "data": homedepot_data(),
        "split": "items 80/20 by a hash of the product id; held-out rows: rated pairs of the 20%",
        "labeled_pairs": len(labeled), "validation_pairs": len(val), "transfer_pairs": len(transfer),
        "candidate_pairs": len(cand), "test_pairs": len(test), "max_length": args.max_length,
        "groups": {k: rows["teacher"][f"{k}_groups"] for k in VIEWS[1:]},
        "rows": rows, "table": "\n".join(table), "seconds": round(time.time() - t_start, 1),
        "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
