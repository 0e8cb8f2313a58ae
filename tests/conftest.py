"""Shared fixtures: where the real datasets are, and a private MLflow store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def mail_store(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with the module's own phishing corpus cache and MLflow store, set in the
    environment while the module runs."""
    from threattune.phishing import CACHE_ENV

    folder = tmp_path_factory.mktemp("mail-store")
    saved = {name: os.environ.get(name) for name in (CACHE_ENV, "MLFLOW_TRACKING_URI")}
    os.environ[CACHE_ENV] = str(folder / "cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    yield folder
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
