"""threattune: fine-tune pretrained models into threat classifiers fitted to one security
operation, and keep them trustworthy in production."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
