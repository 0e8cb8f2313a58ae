"""skops, imported without pulling in torch.

When skops is imported it lists scikit-learn's public types by importing every scikit-learn
module, and one of them (``sklearn.externals.array_api_compat.torch``) imports torch whenever
torch is installed: several seconds and hundreds of MB for every command that loads a flow
baseline, which never needs torch. So skops is imported while torch is hidden from the import
system; that module is then skipped (it holds no estimator, so the trusted types are the same)
and torch imports normally afterwards.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

__all__ = ["sio"]


class _HiddenTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _import_skops() -> Any:
    if "torch" in sys.modules or "skops.io" in sys.modules:
        import skops.io

        return skops.io
    finder = _HiddenTorch()
    sys.meta_path.insert(0, finder)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(finder)
        for name in [
            n for n in sys.modules if n.startswith("sklearn.externals.array_api_compat.torch")
        ]:
            del sys.modules[name]
    return skops.io


sio = _import_skops()
