# Databricks notebook source
# MAGIC %md
# MAGIC # kpspark: Full-batch inference
# MAGIC
# MAGIC Every item -> `recommendations` (atomic overwrite) with the `@champion` models from the registry, stamped with their versions and the run id; records the processed table versions in `pipeline_state` for the daily diff.
# MAGIC
# MAGIC Widgets: `conf` (config files, comma-separated) and `set` (overrides, `key=value` separated by `;`).
# MAGIC The notebook is thin: everything happens in `kpspark.workflows.run_full_batch`, which the spark-submit job calls too.

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
result = workflows.run_full_batch(cfg, spark)
notebook.show(result)
