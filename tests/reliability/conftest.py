"""The reliability suite (``make reliability``): fault injection, hostile input, secrets and model
safety. Tests record their figures with the ``figures`` fixture; when ``KPSPARK_RELIABILITY_OUT`` names
a file (``make reliability`` sets ``bench/results/reliability.json``) they are merged into it at the end
of the session, with the machine's description.

Tests marked ``reliability`` (killing executors, workers, drivers and servers; the faulty LLM server;
prompt injection) are left out of ``make test`` (the default ``-m "not reliability"``) and run by
``make reliability``; the cheap ones (hostile input, secrets, model safety) run in both."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    return _FIGURES


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    out = os.environ.get("KPSPARK_RELIABILITY_OUT")
    if not out or not _FIGURES:
        return
    path = Path(out)
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("figures", {}).update(_FIGURES)
    data["cores"] = os.cpu_count()
    machine = Path(__file__).resolve().parents[2] / "bench" / "results" / "machine.json"
    if machine.exists():
        data["machine"] = json.loads(machine.read_text())
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
