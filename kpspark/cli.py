"""Command line: ``kpspark <command>`` and the shared entry of the spark-submit jobs.

Commands: ``demo``, ``generate-sample``, ``baseline``, ``label-pairs``, ``train-cross-encoder``, ...,
``calibrate-evaluate``, ``promote [--force]``, ``rollback``, ``jars``, ``submit``.
Every workflow command takes ``--conf FILE`` (repeatable) and ``--set key=value`` (repeatable).

``kpspark submit [spark-submit options] jobs/<job>.py [job args]`` is ``spark-submit`` from this environment's
pyspark, with the Delta jars on ``--jars``, this interpreter as the Python of the driver and (unless
``spark.pyspark.python`` says otherwise) the executors, and Spark's log at WARN: it works without activating the
virtual environment.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable, Sequence

from kpspark.config import Config, parse_job_args

Workflow = Callable[..., dict[str, Any]]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("py4j", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(workflow_name: str, argv: Sequence[str] | None = None, description: str = "") -> dict[str, Any]:
    """Parse ``--conf/--set``, build the session, run ``kpspark.workflows.<workflow_name>``, print
    its result as JSON on stdout and return it. Used by every ``jobs/*.py``."""
    from kpspark import workflows
    from kpspark.session import get_spark

    _setup_logging()
    cfg, _ = parse_job_args(argv, description=description)
    spark = get_spark(cfg, app_name=f"kpspark-{workflow_name}")
    result: dict[str, Any] = getattr(workflows, workflow_name)(cfg, spark)
    print(json.dumps(result, indent=2, default=str))
    return result


def _promote(cfg: Config, argv: Sequence[str], force: bool = False) -> dict[str, Any]:
    from kpspark.registry import models

    name = argv[0] if argv else cfg.models.cross_encoder
    version = models.promote(cfg, name, cfg.models.candidate_alias, cfg.models.serving_alias, force=force)
    return {"model": name, "alias": cfg.models.serving_alias, "version": version}


def _rollback(cfg: Config, argv: Sequence[str], force: bool = False) -> dict[str, Any]:
    from kpspark.registry import models

    name = argv[0] if argv else cfg.models.cross_encoder
    return {"model": name, "alias": cfg.models.serving_alias,
            "version": models.rollback(cfg, name, cfg.models.serving_alias)}


_WORKFLOWS = {"demo": "run_demo", "generate-sample": "run_generate_sample", "baseline": "run_baseline",
              "label-pairs": "run_label_pairs", "train-judge": "run_train_judge", "load": "run_load", "load-homedepot": "run_load_homedepot",
              "train-cross-encoder": "run_train_cross_encoder", "score-pairs": "run_score_pairs",
              "train-bi-encoder": "run_train_bi_encoder", "bi-encoder-ablation": "run_bi_encoder_ablation",
              "embed": "run_embed", "recommend": "run_recommend",
              "calibrate-evaluate": "run_calibrate_evaluate", "full-batch": "run_full_batch",
              "daily-diff": "run_daily_diff", "streaming": "run_streaming"}


def submit_command(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``spark-submit`` command line and environment that ``kpspark submit argv`` runs."""
    import os
    from importlib import resources
    from pathlib import Path

    import pyspark

    from kpspark.jars import jar_paths

    home = Path(pyspark.__file__).resolve().parent
    out = dict(os.environ if env is None else env)
    out["SPARK_HOME"] = str(home)  # spark-submit would run find_spark_home.py under the system python3
    out.setdefault("PYSPARK_PYTHON", sys.executable)
    out.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    args = list(argv)
    cmd = [str(home / "bin" / "spark-submit")]
    if "--jars" not in args:
        given = [a.split("=", 1)[1] for a in args if a.startswith("spark.jars_dir=")]  # the job's --set
        jars = jar_paths(configured=given[-1] if given else out.get("KPSPARK_JARS_DIR"))
        cmd += ["--jars", ",".join(jars)]
    if "--driver-java-options" not in args and not any("log4j" in a for a in args):
        log4j = resources.files("kpspark") / "resources" / "log4j2-warn.properties"
        cmd += ["--driver-java-options", f"-Dlog4j2.configurationFile=file:{log4j}"]
    return cmd + args, out


def _submit(argv: Sequence[str]) -> int:
    import subprocess

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: kpspark submit [spark-submit options] jobs/<job>.py [--conf F] [--set k=v] ...")
        return 0
    cmd, env = submit_command(argv)
    return subprocess.call(cmd, env=env)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kpspark`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (f"usage: kpspark {{{','.join([*_WORKFLOWS, 'promote', 'rollback', 'jars', 'submit'])}}} "
             "[--conf F] [--set k=v] ...")
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + "\n" + usage)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "submit":
        return _submit(rest)
    if cmd == "jars":
        from kpspark.jars import main as jars_main

        return jars_main(rest)
    if cmd in _WORKFLOWS:
        run_job(_WORKFLOWS[cmd], rest)
        return 0
    if cmd in ("promote", "rollback"):
        _setup_logging()
        cfg, args = parse_job_args(rest, description=f"kpspark {cmd}",
                                   extra=[("model", {"nargs": "?", "help": "registered model name "
                                                     "(default: models.cross_encoder)"}),
                                          ("--force", {"action": "store_true", "help": "promote even a version "
                                                       "that failed the evaluation gate"})])
        try:
            result = (_promote if cmd == "promote" else _rollback)(cfg, [args.model] if args.model else [],
                                                                   force=args.force)
        except (ValueError, RuntimeError) as e:
            print(f"kpspark {cmd}: {e}", file=sys.stderr)
            return 1
        print(json.dumps(result))
        return 0
    print(f"unknown command {cmd!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
