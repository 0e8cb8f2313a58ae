"""The MLflow pyfunc face of a flow model, logged as code so that loading unpickles nothing.

MLflow runs this file when it loads the model; the model itself is the flow-model folder
stored as the artifact ``flow_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class FlowModelPyfunc(PythonModel):
    """Scores a DataFrame of flows: class, score, attack score, alert and ATT&CK techniques."""

    def load_context(self, context: Any) -> None:
        from threattune.flow_model import FlowModel

        self.model = FlowModel.load(Path(context.artifacts["flow_model"]), with_baseline=False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from threattune.scoring import score_frame

        return score_frame(self.model, model_input)


mlflow.models.set_model(FlowModelPyfunc())
