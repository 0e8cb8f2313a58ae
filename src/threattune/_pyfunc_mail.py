"""The MLflow pyfunc face of a mail model, logged as code so that loading unpickles nothing.

MLflow runs this file when it loads the model; the model itself is the mail-model folder stored
as the artifact ``mail_model``. Input: a DataFrame with a ``raw`` column holding each message
as RFC 822 text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class MailModelPyfunc(PythonModel):
    """Scores raw messages: class, score, threat score, alert, technique and evidence."""

    def load_context(self, context: Any) -> None:
        from threattune.mail_model import MailModel

        self.model = MailModel.load(Path(context.artifacts["mail_model"]), with_baseline=False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from threattune.mail_scoring import score_raw

        return score_raw(self.model, model_input["raw"].astype(str).tolist())


mlflow.models.set_model(MailModelPyfunc())
