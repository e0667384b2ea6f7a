# Databricks notebook source
# MAGIC %md
# MAGIC # kpspark: Offline evaluation and promotion gate
# MAGIC
# MAGIC Calibrates the threshold that keeps 95% of clicks, writes the Table-1 style report (keyphrase reduction, sales kept, search pass rate, agreement with human labels, retrieval recall) to MLflow, and promotes the challenger to `@champion` only when the gate passes.
# MAGIC
# MAGIC Widgets: `conf` (config files, comma-separated) and `set` (overrides, `key=value` separated by `;`).
# MAGIC The notebook is thin: everything happens in `kpspark.workflows.run_calibrate_evaluate`, which the spark-submit job calls too.

# COMMAND ----------

# Outside Databricks (plain Python, Jupyter, the tests) there is no `spark`/`dbutils`: make local ones.
try:
    spark, dbutils  # noqa: B018
except NameError:
    from kpspark.notebook import local_context

    spark, dbutils = local_context()

# COMMAND ----------

dbutils.widgets.text("conf", "conf/cluster.yaml", "Config files")
dbutils.widgets.text("set", "", "Overrides (key=value; ...)")

# COMMAND ----------

from kpspark import notebook, workflows

cfg = notebook.config(dbutils.widgets.get("conf"), dbutils.widgets.get("set"))
result = workflows.run_calibrate_evaluate(cfg, spark)
notebook.show(result)
