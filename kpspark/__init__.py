from __future__ import annotations
from kpspark._version import __version__
__all__ = ["__version__"]
