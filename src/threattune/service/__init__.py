"""The REST service and dashboard: scoring, alerts, verdicts, diagnoses, models, metrics.

``threattune serve`` runs :func:`create_app` under uvicorn; ``threattune serve-keys`` manages
its API keys.
"""

from __future__ import annotations

from threattune.service.app import create_app
from threattune.service.settings import Limits, ServiceSettings

__all__ = ["Limits", "ServiceSettings", "create_app"]
