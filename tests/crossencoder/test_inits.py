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
