"""Record the benchmark machine: CPU model, SIMD flags and the measured single-core GEMM rate.

The per-core targets of the issues were set from a spike on an Intel Xeon with AVX-512 VNNI
(~155 GFLOP/s fp32 GEMM per core); this file says what the numbers in ``bench/results`` ran on so
they can be compared. Run: ``.venv/bin/python bench/machine.py`` (writes bench/results/machine.json).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def gemm_gflops(n: int = 1024, reps: int = 20) -> float:
    """fp32 GEMM GFLOP/s of numpy on the calling thread (run with 1 BLAS thread)."""
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype="float32")
    for _ in range(3):
        a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def cpu_info() -> dict:
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = sorted(f for f in flags if f.startswith(("avx512", "avx_vnni", "amx")) or f in ("avx2", "fma"))
    return {"model": model, "simd": simd, "cores": os.cpu_count()}


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    info = {"platform": platform.platform(), **cpu_info(), "gemm_fp32_gflops_1core": round(gemm_gflops(), 1),
            "spike_reference": {"cpu": "Intel Xeon, AVX-512 VNNI", "gemm_fp32_gflops_1core": 155,
                                "source": "../shared/docs/cpu-feasibility.md"}}
    info["relative_to_spike"] = round(info["gemm_fp32_gflops_1core"] / 155, 2)
    out = Path(__file__).resolve().parent / "results" / "machine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
