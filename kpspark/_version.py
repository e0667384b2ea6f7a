"""The single version string of kpspark."""
from __future__ import annotations

__version__ = "0.1.0"
