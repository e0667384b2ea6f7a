"""Click-retention calibration: the threshold math, per-category thresholds, the stage on Spark."""
from __future__ import annotations

import numpy as np
import pytest

from kpspark.errors import SchemaError
from kpspark.evaluation.calibration import ThresholdCalibrator, ThresholdModel, retention_curve
from kpspark.rules import retention_threshold


def test_retention_curve():
    np.testing.assert_allclose(retention_curve(np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.5, 1.0])),
                               [1.0, 2 / 3, 0.0])


def test_calibrator_global_and_per_category_and_save_load(spark, tmp_path):
    rng = np.random.default_rng(1)
    rows = [("a", float(x)) for x in rng.uniform(0.6, 1.0, 200)] + \
           [("b", float(x)) for x in rng.uniform(0.1, 0.5, 200)] + [("c", 0.99)] * 5  # c: too few positives
    df = spark.createDataFrame(rows, "category string, ce_score double")
    glob = ThresholdCalibrator(targetRetention=0.95).fit(df)
    scores = np.array([r[1] for r in rows])
    assert glob.getThreshold() == pytest.approx(retention_threshold(scores, target=0.95))
    per = ThresholdCalibrator(categoryCol="category", minPositives=50).fit(df)
    th = per.thresholds()
    assert set(th) == {"a", "b"} and th["a"] > th["b"]
    marked = per.transform(df).toPandas()
    for c in ("a", "b"):
        assert marked.loc[marked.category == c, "relevant"].mean() >= 0.95
    per.write().overwrite().save(str(tmp_path / "t"))
    back = ThresholdModel.load(str(tmp_path / "t"))
    assert back.thresholds() == th and back.getThreshold() == per.getThreshold()
    kept = back.copy({back.filterRows: True}).transform(df).count()
    assert kept == int(marked["relevant"].sum())
    with pytest.raises(SchemaError, match="score"):
        ThresholdCalibrator(scoreCol="nope").fit(df)


def test_click_weighted_calibration_keeps_the_share_of_clicks(spark):
    """With a weight column the threshold keeps 95% of clicks, not of clicked pairs: many pairs with one
    noisy click weigh less than a few pairs with many clicks."""
    rows = [(0.9, 100.0)] * 10 + [(0.05, 1.0)] * 40  # 1,000 clicks on good pairs, 40 single noisy clicks
    df = spark.createDataFrame(rows, "ce_score double, clicks double")
    by_clicks = ThresholdCalibrator(weightCol="clicks").fit(df).getThreshold()
    by_pairs = ThresholdCalibrator().fit(df).getThreshold()
    assert by_clicks == pytest.approx(0.9) and by_pairs == pytest.approx(0.05)
    with pytest.raises(SchemaError, match="clicks_missing"):
        ThresholdCalibrator(weightCol="clicks_missing").fit(df)
