"""Shared fixtures: where the real datasets are, and a private MLflow store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("THREATTUNE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder of real public datasets (``THREATTUNE_DATA``, by default ../shared/data)."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"datasets not found at {root}; set THREATTUNE_DATA")
    os.environ["THREATTUNE_DATA"] = str(root)
    return root


@pytest.fixture()
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh MLflow tracking store on SQLite in the test's own folder."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
