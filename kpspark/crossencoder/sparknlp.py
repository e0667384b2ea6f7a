"""``SparkNlpCrossEncoderModel``: the exported cross-encoder scored by Spark NLP's ``BertForSequenceClassification``
instead of kpspark's pandas UDF — the same Params, the same ``score`` column (sigmoid of the logit; null for a blank
keyphrase or title), another engine. Spark 3.5 only: Spark NLP (5.5.3) publishes no Scala 2.13 artifact on Maven
Central, so on Spark 4 this stage raises a clear error. Install ``kpspark[nlp]`` and start the session with
``spark.with_nlp: true`` (``python -m kpspark.jars fetch --with-nlp`` caches the jars once).

Spark NLP reads one text per row, and its word-piece step has no special tokens, so a pair goes in as
``keyphrase ¶ category ¶ title`` (:func:`pair_text`; a pilcrow in a text becomes a space on this path), split into
words as BERT splits them (:data:`TOKEN_SPLIT`, a ``RegexTokenizer``), and its model folder is made from the export
(:func:`spark_nlp_folder`) with two additions to the ONNX graph, both computed from ``input_ids`` because Spark NLP
feeds ``token_type_ids`` as zeros: the pilcrow's id is mapped to ``[SEP]``'s, and the segment ids are 1 after the
first ``[SEP]``, as the tokenizer sets them for a sentence pair; and a second, constant logit 0 (labels
``relevant``, ``not_relevant``), so Spark NLP's softmax gives the sigmoid of the model's logit. What still differs
from kpspark's own tokenizer: accents are not stripped and CJK characters are not split (such texts score slightly
differently).

The model is read on the driver when the stage transforms (a registry URI needs only the driver's access to the
tracking server) and Spark NLP ships its ONNX file to the executors (``SparkContext.addFile``) under the fixed name
``model.onnx``: one Spark NLP cross-encoder per Spark application (a second one is refused with a clear error).
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpspark.cache import ProcessCache
from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
from kpspark.errors import KPSparkError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)

#: The label Spark NLP reports the score under (``assets/labels.txt``; the other is its complement).
LABEL = "relevant"
#: The character that stands for ``[SEP]`` in the text Spark NLP reads (a vocabulary token the graph maps back).
SEP_STANDIN = "\u00b6"  # the pilcrow
#: Spark NLP's tokens, split as BERT's basic tokenizer splits: at whitespace and around each punctuation mark (ASCII
#: punctuation and Unicode category P); the annotator's word-piece step then sees what kpspark's tokenizer sees.
TOKEN_SPLIT = r"\s+|(?=[\p{Punct}\p{IsPunctuation}])|(?<=[\p{Punct}\p{IsPunctuation}])"
_INSTALL = ("the Spark NLP scorer needs Spark 3.5 with Spark NLP: pip install 'kpspark[nlp]' 'pyspark>=3.5.3,<3.6', "
            "then python -m kpspark.jars fetch --with-nlp and spark.with_nlp: true")


def _spark_nlp_graph(graph: Any, sep_id: int, standin_id: int) -> None:
    """Rewrite ``graph`` in place: ``input_ids`` with ``standin_id`` mapped to ``sep_id``; segment ids computed from
    the ``[SEP]`` positions (the ``token_type_ids`` input stays, unused); logits ``(logit, 0)``."""
    from onnx import TensorProto, helper

    ids, types = "kp_input_ids", "kp_token_type_ids"
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = {"input_ids": ids, "token_type_ids": types}.get(name, name)

    def const(name: str, value: int) -> Any:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [], [value]))

    nodes = [const("kp_sep", sep_id), const("kp_standin", standin_id), const("kp_zero", 0), const("kp_axis", 1),
             helper.make_node("Equal", ["input_ids", "kp_standin"], ["kp_is_standin"]),
             helper.make_node("Where", ["kp_is_standin", "kp_sep", "input_ids"], [ids]),
             helper.make_node("Equal", [ids, "kp_sep"], ["kp_is_sep_b"]),
             helper.make_node("Cast", ["kp_is_sep_b"], ["kp_is_sep"], to=TensorProto.INT64),
             helper.make_node("CumSum", ["kp_is_sep", "kp_axis"], ["kp_seps_to_here"]),
             helper.make_node("Sub", ["kp_seps_to_here", "kp_is_sep"], ["kp_seps_before"]),
             helper.make_node("Greater", ["kp_seps_before", "kp_zero"], ["kp_second"]),
             helper.make_node("Cast", ["kp_second"], [types], to=TensorProto.INT64)]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    # a second, constant logit 0: Spark NLP's softmax over (logit, 0) is the sigmoid of the logit, for every row
    out = graph.output[0]
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == out.name:
                node.output[i] = "kp_logit"
    graph.node.extend([helper.make_node("Sub", ["kp_logit", "kp_logit"], ["kp_zero_logit"]),
                       helper.make_node("Concat", ["kp_logit", "kp_zero_logit"], [out.name], axis=1)])
    out.type.tensor_type.shape.dim[1].dim_value = 2


def spark_nlp_folder(export_dir: str | Path, dest: str | Path, precision: str = "int8") -> Path:
    """Write the folder ``BertForSequenceClassification.loadSavedModel`` reads (``model.onnx``, ``assets/vocab.txt``,
    ``assets/labels.txt``) from a cross-encoder export; returns ``dest``."""
    import onnx

    from kpspark.artifacts import META_FILE, model_file

    src, dest = Path(export_dir), Path(dest)
    meta = json.loads((src / META_FILE).read_text())
    if meta.get("kind") != "cross_encoder":
        raise KPSparkError(f"{src} is not a cross-encoder export (kind {meta.get('kind')!r})")
    vocab = json.loads((src / "tokenizer.json").read_text())["model"].get("vocab")
    if not isinstance(vocab, dict) or "[SEP]" not in vocab or SEP_STANDIN not in vocab:
        raise KPSparkError(f"{src}: the Spark NLP path needs a WordPiece vocabulary with [SEP] and {SEP_STANDIN!r} "
                           "(its stand-in in the text); this tokenizer has not both")
    words = sorted(vocab, key=vocab.get)
    if [vocab[w] for w in words] != list(range(len(words))):
        raise KPSparkError(f"{src}: the vocabulary's ids are not 0..{len(words) - 1}")
    model = onnx.load(str(model_file(src, meta, precision)))
    _spark_nlp_graph(model.graph, vocab["[SEP]"], vocab[SEP_STANDIN])
    onnx.checker.check_model(model)
    (dest / "assets").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest / "model.onnx"))
    (dest / "assets" / "vocab.txt").write_text("\n".join(words) + "\n")
    (dest / "assets" / "labels.txt").write_text(f"{LABEL}\nnot_{LABEL}\n")
    (dest / "max_length").write_text(str(int(meta["max_length"])))
    return dest


def pair_text(keyphrase: "Column", category: "Column | None", title: "Column") -> "Column":
    """``keyphrase ¶ category ¶ title`` (no category part when it is blank; see the module doc): the Spark twin of
    :func:`kpspark.crossencoder.text.pair_texts` for Spark NLP."""
    from pyspark.sql import functions as F

    from kpspark.crossencoder.text import second_segment_column

    def clean(c: "Column") -> "Column":
        return F.trim(F.translate(F.coalesce(c, F.lit("")), SEP_STANDIN, " "))

    sep = f" {SEP_STANDIN} "
    return F.concat(clean(keyphrase), F.lit(sep),
                    second_segment_column(None if category is None else clean(category), clean(title), sep))


_LOADED = ProcessCache("Spark NLP cross-encoders")  # (application, model URI, precision) -> annotator


def _annotator(spark: "SparkSession", export_dir: Path, precision: str) -> Any:
    import atexit
    import shutil

    from sparknlp.annotator import BertForSequenceClassification

    # Spark NLP ships the ONNX file to executors with SparkContext.addFile: the folder must outlive the load (it is
    # served from there for the application's life) and is removed when this process exits
    tmp = tempfile.mkdtemp(prefix="kpspark-sparknlp-")
    atexit.register(shutil.rmtree, tmp, True)
    folder = spark_nlp_folder(export_dir, Path(tmp) / "model", precision)
    clf = BertForSequenceClassification.loadSavedModel(str(folder), spark)
    return clf.setInputCols(["_kp_nlp_document", "_kp_nlp_token"]).setOutputCol("_kp_nlp_class") \
        .setCaseSensitive(False).setMaxSentenceLength(int((folder / "max_length").read_text()))


def _loaded(spark: "SparkSession", uri: str, precision: str, load: Any) -> Any:
    """The annotator of ``(uri, precision)`` in this application, loaded once. A second model in one application is
    refused: Spark NLP distributes every ONNX file under the name ``model.onnx``, so two would collide."""
    app = spark.sparkContext.applicationId
    held = [k for k in _LOADED.keys() if k[0] == app and k != (app, uri, precision)]
    if held:
        raise KPSparkError(f"this Spark application already scores with {held[0][1]} ({held[0][2]}) through Spark NLP, "
                           f"which ships every model to executors as one file name (model.onnx): score "
                           f"{uri} ({precision}) in another application, or with OnnxCrossEncoderModel")
    return _LOADED.get((app, uri, precision), load)


def check_available(spark: "SparkSession") -> None:
    """Raise :class:`KPSparkError` naming what is missing when Spark NLP cannot run in ``spark``."""
    from kpspark import jars
    from kpspark.errors import JarsMissingError

    try:
        jars.coordinate("nlp", jars.lane(spark.version))
    except JarsMissingError as e:
        raise KPSparkError(f"{e}. {_INSTALL}") from None
    try:
        import sparknlp  # noqa: F401
    except ImportError:
        raise KPSparkError(f"the sparknlp package is not installed: {_INSTALL}") from None
    from py4j.java_gateway import JavaClass

    try:
        jvm = spark.sparkContext._jvm
    except Exception:  # a Spark Connect session has no SparkContext
        jvm = None
    found = jvm is not None and isinstance(
        jvm.com.johnsnowlabs.nlp.annotators.classifier.dl.BertForSequenceClassification, JavaClass)
    if not found:
        raise KPSparkError(f"the Spark NLP jars are not on this session's classpath (or it is a Spark Connect session): "
                           f"{_INSTALL}")


class SparkNlpCrossEncoderModel(OnnxCrossEncoderModel):
    """Score pairs with an exported cross-encoder through Spark NLP (see the module doc). Same Params as
    :class:`~kpspark.crossencoder.scorer.OnnxCrossEncoderModel`; ``threads`` and ``minPartitions`` are not used
    (Spark NLP runs ONNX Runtime in the executors' JVM)."""

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.ml import Pipeline
        from pyspark.sql import functions as F

        from kpspark.artifacts import local_model_dir
        from kpspark.sparkutil import check_input_cols

        g = self.getOrDefault
        self._check_model_uri()
        check_input_cols("SparkNlpCrossEncoderModel", dataset,
                         {"keyphrase": g(self.keyphraseCol), "title": g(self.titleCol), "category": g(self.categoryCol)},
                         outputs=[g(self.outputCol)], optional=["category"])
        spark = dataset.sparkSession
        check_available(spark)
        from sparknlp.annotator import RegexTokenizer
        from sparknlp.base import DocumentAssembler

        uri = self.resolvedModelUri()
        tracking, registry = self._stores_for_executors()
        clf = _loaded(spark, uri, g(self.precision), lambda: _annotator(
            spark, local_model_dir(uri, tracking, registry), g(self.precision)))
        clf = clf.setBatchSize(g(self.batchSize))
        kp, title = F.col(g(self.keyphraseCol)), F.col(g(self.titleCol))
        blank = (F.trim(F.coalesce(kp, F.lit(""))) == "") | (F.trim(F.coalesce(title, F.lit(""))) == "")
        texts = dataset.withColumn("_kp_nlp_text", pair_text(kp, self._category(), title))
        pipe = Pipeline(stages=[  # fitting reads no rows: every stage's rules are its Params
            DocumentAssembler().setInputCol("_kp_nlp_text").setOutputCol("_kp_nlp_document"),
            RegexTokenizer().setPattern(TOKEN_SPLIT).setInputCols(["_kp_nlp_document"]).setOutputCol("_kp_nlp_token"),
            clf]).fit(texts)
        scored = pipe.transform(texts)
        score = F.element_at(F.col("_kp_nlp_class"), 1).getField("metadata").getItem(LABEL).cast("double")
        return scored.withColumn(g(self.outputCol), F.when(blank, F.lit(None).cast("double")).otherwise(score)) \
            .drop("_kp_nlp_text", "_kp_nlp_document", "_kp_nlp_token", "_kp_nlp_class")
