"""The result a job prints: ``kpspark.cli.run_job`` ends its stdout with the workflow's result as indented JSON."""
from __future__ import annotations

import json


def job_result(stdout: str) -> dict:
    """The last JSON object a job printed (anything it printed before, such as ``show()`` rows, is skipped)."""
    out = "\n" + stdout
    return json.loads(out[out.rindex("\n{\n") + 1:])
