"""Cross-encoder initialisations, without the demo fixture: the packaged MiniLM cut to N layers, and any Hugging
Face model folder (users have the hub; here a folder written by another init stands in for it)."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")


def test_minilm_layers_and_a_model_folder_initialise_a_one_logit_cross_encoder(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from kpspark.crossencoder.train import init_model

    four = init_model("minilm4", tmp_path / "minilm4")
    cfg = AutoConfig.from_pretrained(four)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_labels) == (4, 384, 1)
    tiny = init_model("bert-tiny", tmp_path / "tiny")
    again = init_model(str(tiny), tmp_path / "from-folder")  # a folder, as a hub id or a user's model would be
    a, b = (AutoModelForSequenceClassification.from_pretrained(d) for d in (tiny, again))
    assert a.config.hidden_size == b.config.hidden_size == 128
    assert all((p == q).all() for p, q in zip(a.state_dict().values(), b.state_dict().values()))  # same weights
    assert AutoTokenizer.from_pretrained(again).vocab_size == AutoTokenizer.from_pretrained(tiny).vocab_size
    with pytest.raises(ValueError, match="Hugging Face model folder"):
        init_model(str(tmp_path / "no-such-model"), tmp_path / "x")


def _word_match_pairs(n: int, seed: int):
    """Pairs whose label is whether the keyphrase names the item's product (``drill`` in ``cordless drill 18v``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    nouns = ["hammer", "drill", "saw", "wrench", "ladder", "faucet", "lamp", "rug", "shelf", "mower", "grill", "fan"]
    adjs = ["red", "steel", "cordless", "small", "outdoor", "white", "heavy", "oak", "brass", "large"]
    rows = []
    for i in range(n):
        noun = nouns[rng.integers(len(nouns))]
        kp_noun = noun if rng.random() < 0.5 else nouns[rng.integers(len(nouns))]
        rows.append({"item_id": i // 2, "keyphrase": f"{adjs[rng.integers(len(adjs))]} {kp_noun}",
                     "category": "tools", "title": f"{adjs[rng.integers(len(adjs))]} {noun} {rng.integers(2, 40)} in",
                     "label": int(kp_noun == noun)})
    return pd.DataFrame(rows)


def test_a_teacher_trained_on_the_labels_is_distilled_into_the_serving_shape(tmp_path):
    """``teacher``: a wider cross-encoder (a model folder: hidden 256) learns the labels, then the 2-layer
    bert-tiny serving shape learns its logits (MSE); the student follows the teacher on held-out pairs, and a trained
    teacher folder (``teacher_epochs=0``) is distilled from as it is, giving the same student."""
    import numpy as np
    import transformers

    from kpspark.config import CrossEncoderTraining
    from kpspark.crossencoder.train import init_model, ce_logits, train_cross_encoder

    tok = transformers.AutoTokenizer.from_pretrained(init_model("bert-tiny", tmp_path / "tiny"))
    transformers.set_seed(0)
    wide = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=1024, num_labels=1)
    transformers.BertForSequenceClassification(wide).save_pretrained(tmp_path / "wide")
    tok.save_pretrained(tmp_path / "wide")
    train, val = _word_match_pairs(480, 0), _word_match_pairs(160, 1)
    # 8 epochs each (~19 s in all; measured: teacher AUC 0.75, student-teacher correlation 0.99, MSE 0.03 of the
    # teacher's variance)
    cfg = CrossEncoderTraining(init="bert-tiny", epochs=8, batch_size=32, eval_steps=15, max_length=24,
                               teacher=str(tmp_path / "wide"), teacher_epochs=8, teacher_lr=5e-4)
    res = train_cross_encoder(train, val, tmp_path / "a", cfg, seed=3)
    assert transformers.AutoConfig.from_pretrained(res["teacher_dir"]).hidden_size == 256
    shape = transformers.AutoConfig.from_pretrained(res["model_dir"])
    assert (shape.hidden_size, shape.num_hidden_layers) == (128, 2)  # the student: the serving shape
    assert res["teacher_val_auc_labels"] > 0.65, res  # the teacher learned the labels (AUC on held-out pairs)
    t, s = (ce_logits(res[k], val, cfg.max_length) for k in ("teacher_dir", "model_dir"))
    assert np.corrcoef(t, s)[0, 1] > 0.8, (np.corrcoef(t, s), res)  # the student learned the teacher's logits,
    assert np.mean((s - t) ** 2) < 0.35 * t.var(), (np.mean((s - t) ** 2), t.var())  # on their scale

    again = train_cross_encoder(train, val, tmp_path / "b", _trained_teacher(cfg, res["teacher_dir"]), seed=3)
    assert not (tmp_path / "b" / "teacher").exists() and "teacher_train_loss" not in again
    np.testing.assert_allclose(ce_logits(again["model_dir"], val, cfg.max_length), s, atol=1e-4)
    with pytest.raises(ValueError, match="trained cross-encoder folder"):
        train_cross_encoder(train, val, tmp_path / "c", _trained_teacher(cfg, "minilm2"), seed=3)


def _trained_teacher(cfg, teacher):
    import dataclasses

    return dataclasses.replace(cfg, teacher=teacher, teacher_epochs=0)
