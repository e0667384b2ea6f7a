# Databricks notebook source
# MAGIC %md
# MAGIC # kpspark: LLM labeling
# MAGIC
# MAGIC Samples unlabeled (item, keyphrase) pairs and labels them with the LLM judge (`llm.backend`: vllm on a GPU cluster, openai against any OpenAI-compatible server, transformers on CPU/GPU); P(yes) from the yes/no log-probabilities is MERGEd into `llm_labels` chunk by chunk, so a rerun labels only the rest.
# MAGIC
# MAGIC Widgets: `conf` (config files, comma-separated) and `set` (overrides, `key=value` separated by `;`).
# MAGIC The notebook is thin: everything happens in `kpspark.workflows.run_label_pairs`, which the spark-submit job calls too.

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
result = workflows.run_label_pairs(cfg, spark)
notebook.show(result)
