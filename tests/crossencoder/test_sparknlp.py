"""The Spark NLP scorer (``kpspark.crossencoder.sparknlp``): the model folder it builds from an export scores as
the export does (ONNX Runtime, no Spark NLP needed); on Spark 3.5 Spark NLP itself scores the demo model's pairs as
kpspark's own stage does, fp32 and int8; on Spark 4 the stage says why it cannot run."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kpspark import jars
from kpspark.artifacts import META_FILE, local_model_dir, model_file
from kpspark.crossencoder.export import int8_problems
from kpspark.crossencoder.sparknlp import SEP_STANDIN, SparkNlpCrossEncoderModel, spark_nlp_folder
from kpspark.errors import KPSparkError
from tests.conftest import REPO, use_store

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes): the 3.5 lane runs Spark NLP


@pytest.fixture(scope="module")
def export(pipeline):
    """The local folder of the cross-encoder the session's demo pipeline registered."""
    _, out, tmp = pipeline
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    res = out["cross_encoder"]
    return local_model_dir(f"models:/{res['model']}/{res['version']}", uri, uri)


def test_the_spark_nlp_folder_scores_a_sentence_with_its_sep_standins_as_the_export_scores_the_pair(export, tmp_path):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    folder = spark_nlp_folder(export, tmp_path / "nlp", "fp32")
    vocab = (folder / "assets" / "vocab.txt").read_text().splitlines()
    assert (folder / "assets" / "labels.txt").read_text().split() == ["relevant", "not_relevant"]
    tok = Tokenizer.from_file(str(export / "tokenizer.json"))
    assert [vocab[tok.token_to_id(w)] for w in ("[SEP]", "drill")] == ["[SEP]", "drill"]
    meta = json.loads((export / META_FILE).read_text())
    theirs = ort.InferenceSession(str(model_file(export, meta, "fp32")))
    mine = ort.InferenceSession(str(folder / "model.onnx"))
    sep, standin = vocab.index("[SEP]"), vocab.index(SEP_STANDIN)
    pairs = [("cordless drill", "tools [SEP] 18V cordless drill with two batteries"), ("sofa", "leather sofa, brown"),
             ("wine glasses set", "kitchen [SEP] crystal wine glasses, set of 4")]
    for a, b in pairs:
        e = tok.encode(a, b)
        ids = np.array([e.ids])
        mask = np.ones_like(ids)
        want = theirs.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.array([e.type_ids])})
        # Spark NLP feeds no segment ids, and the text's inner [SEP] markers reach the model as its stand-in
        inner = np.where(ids == sep)[1][:-1]
        fed = ids.copy()
        fed[0, inner] = standin
        for x in (ids, fed):
            got = mine.run(None, {"input_ids": x, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            assert got[:, :1] == pytest.approx(want[0], abs=1e-6) and got[:, 1:] == pytest.approx(0.0), (a, b)
    assert len(set(e.type_ids)) == 2  # a real pair: the segment ids matter


def test_a_folder_that_is_not_a_cross_encoder_is_refused(tmp_path):
    (tmp_path / META_FILE).write_text(json.dumps({"kind": "bi_encoder"}))
    with pytest.raises(KPSparkError, match="not a cross-encoder export"):
        spark_nlp_folder(tmp_path, tmp_path / "out")


def test_on_spark_4_the_spark_nlp_scorer_says_why_it_cannot_run(spark):
    if jars.lane(spark.version) == "3.5":
        pytest.skip("Spark 3.5 runs Spark NLP: the parity test below covers it")
    df = spark.createDataFrame([("drill", "tools", "cordless drill")], "keyphrase string, category string, title string")
    with pytest.raises(KPSparkError, match=r"no Scala 2.13 artifact.*pip install 'kpspark\[nlp\]'"):
        SparkNlpCrossEncoderModel(modelUri="/no/model").transform(df)


def test_spark_nlp_scores_the_demo_models_pairs_as_kpspark_does(spark, pipeline, export, tmp_path, monkeypatch):
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.rules import keyphrase_texts

    if jars.lane(spark.version) != "3.5":
        pytest.skip("Spark NLP has Scala 2.12 jars only: the Spark 3.5 lane runs this (make test-lanes)")
    if not jars.available("nlp"):
        pytest.skip("Spark NLP's jars are not cached: python -m kpspark.jars fetch --with-nlp")
    cfg = pipeline[0]
    use_store(monkeypatch, pipeline[2])
    pairs = (tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id")
             .join(tables.read_table(spark, cfg, "items").select("item_id", "title", "category"), "item_id")
             .join(keyphrase_texts(tables.read_table(spark, cfg, "keyphrases")), "keyphrase_id")
             .orderBy(F.xxhash64("item_id", "keyphrase_id")).limit(300)
             .select("keyphrase", "category", "title").toPandas())
    edge = [("cordless drill", None, "18V cordless drill"), ("", "tools", "hammer"), ("drill", "tools", "   "),
            ("drill bits [10]", "tools", "Drill bit set (10 pieces) 15.6 L@@K"), ("drill bits", "tools", "Drill bit set"),
            ("drill bits", "tools", "Drill bit \u00b6 set")]
    rows = [*pairs.itertuples(index=False, name=None), *edge]
    df = spark.createDataFrame([(i, *r) for i, r in enumerate(rows)],
                               "id int, keyphrase string, category string, title string")
    df.write.parquet(str(tmp_path / "pairs"))
    got = {}
    for precision in ("fp32", "int8"):  # one application each (see tests/tools/sparknlp_parity.py)
        out = tmp_path / f"{precision}.json"
        p = subprocess.run([sys.executable, "-m", "tests.tools.sparknlp_parity", str(export), str(tmp_path / "pairs"),
                            precision, str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        got[precision] = json.loads(out.read_text())
    assert got["fp32"]["transform_jobs"] == got["int8"]["transform_jobs"] == 0  # transform is lazy
    blank = [i for i, r in enumerate(rows) if not (r[0] or "").strip() or not (r[2] or "").strip()]
    plain, pilcrow = len(rows) - 2, len(rows) - 1
    # the one character read otherwise on this path: a pilcrow (Spark NLP's [SEP] stand-in) is a space
    assert got["fp32"]["nlp"][pilcrow] == pytest.approx(got["fp32"]["ours"][plain], abs=1e-5)
    # int8: activation scales are per batch, and Spark NLP batches rows otherwise than our UDF does
    for precision, tol in (("fp32", 1e-5), ("int8", 1e-2)):
        ours, nlp = got[precision]["ours"][:pilcrow], got[precision]["nlp"][:pilcrow]
        assert [i for i, s in enumerate(nlp) if s is None] == blank == [i for i, s in enumerate(ours) if s is None]
        o = np.array([s for s in ours if s is not None])
        n = np.array([s for s in nlp if s is not None])
        assert np.abs(o - n).max() <= tol, precision
        assert o.std() > 0.01  # not a constant model: the agreement is not trivial
        assert int8_problems(float(np.corrcoef(o, n)[0, 1]), float(np.mean((o >= 0.5) == (n >= 0.5)))) == []
