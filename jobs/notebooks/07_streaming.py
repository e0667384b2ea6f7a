# Databricks notebook source
# MAGIC %md
# MAGIC # kpspark: Near-real-time inference
# MAGIC
# MAGIC Item create/revise/delete events from the Change Data Feed of `items`, through the same pipeline, one idempotent MERGE per micro-batch. Set `streaming.trigger=availableNow` to drain the pending changes and stop (a scheduled job); `processingTime` keeps the query running.
# MAGIC
# MAGIC Widgets: `conf` (config files, comma-separated) and `set` (overrides, `key=value` separated by `;`).
# MAGIC The notebook is thin: everything happens in `kpspark.workflows.run_streaming`, which the spark-submit job calls too.

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
result = workflows.run_streaming(cfg, spark)
notebook.show(result)
