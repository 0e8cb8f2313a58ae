"""The preprocessing a flow model was trained with, fitted on the training split only.

Numeric features pass as float32 with infinity as missing; categorical features become codes
from a vocabulary learnt on the training split, and a value never seen there becomes missing.
The encoder saves as plain JSON so that scoring applies exactly what training applied.

>>> import pandas as pd
>>> encoder = FlowEncoder.fit(pd.DataFrame({"proto": ["tcp", "udp"], "bytes": [1.0, 2.0]}),
...                           {"proto": "categorical", "bytes": "numeric"})
>>> encoder.transform(pd.DataFrame({"proto": ["udp", "icmp"], "bytes": [3.0, 4.0]})).tolist()
[[1.0, 3.0], [nan, 4.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PREPROCESSING_VERSION", "FlowEncoder"]

PREPROCESSING_VERSION = "flow-encoder/1"


@dataclass(frozen=True)
class FlowEncoder:
    """Turns a DataFrame of flow features into the float32 matrix a model reads."""

    columns: tuple[str, ...]
    feature_types: dict[str, str]
    vocabularies: dict[str, tuple[str, ...]]

    @classmethod
    def fit(cls, features: pd.DataFrame, feature_types: dict[str, str]) -> FlowEncoder:
        """Learn the column order and the vocabulary of each categorical column."""
        vocabularies = {
            column: tuple(sorted(features[column].dropna().astype(str).unique()))
            for column, kind in feature_types.items()
            if kind == "categorical"
        }
        return cls(tuple(feature_types), dict(feature_types), vocabularies)

    @property
    def categorical(self) -> list[str]:
        """The categorical columns, in column order."""
        return [c for c in self.columns if self.feature_types[c] == "categorical"]

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """The float32 matrix for ``features``; columns must already be checked."""
        matrix = np.empty((len(features), len(self.columns)), dtype=np.float32)
        for position, column in enumerate(self.columns):
            values = features[column]
            if column in self.vocabularies:
                codes = pd.Categorical(values, categories=self.vocabularies[column]).codes
                matrix[:, position] = np.where(codes < 0, np.nan, codes)
            else:
                matrix[:, position] = values.to_numpy(dtype=np.float32, na_value=np.nan)
        np.putmask(matrix, np.isinf(matrix), np.nan)
        return matrix

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, with the preprocessing version."""
        return {
            "version": PREPROCESSING_VERSION,
            "columns": list(self.columns),
            "feature_types": self.feature_types,
            "vocabularies": {c: list(v) for c, v in self.vocabularies.items()},
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> FlowEncoder:
        """Rebuild an encoder saved by :meth:`to_dict`."""
        return cls(
            tuple(spec["columns"]),
            dict(spec["feature_types"]),
            {c: tuple(v) for c, v in spec["vocabularies"].items()},
        )
