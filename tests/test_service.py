"""The REST service in-process: keys and scopes, limits, the store, escaping, alias reloads.

The application runs under FastAPI's test client, each test with its own SQLite store in its
own temporary folder. Tests that score use one small model trained per module on a slice of
KDDTrain+; tests of keys, limits and the store need no model. Alias following is driven by
hand (``check_now``) with a stub loader, so no test waits on the reload thread's clock.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import flow_samples as samples
from threattune import training
from threattune.cli import app as cli_app
from threattune.errors import ConfigError
from threattune.flow_model import FlowModel
from threattune.service import Limits, ServiceSettings, create_app
from threattune.service.dashboard import OTHER, stacked_bars
from threattune.service.diagnoses import summarise_diagnosis
from threattune.service.keys import hash_secret, parse_key
from threattune.service.served import ModelSet
from threattune.service.store import ServiceStore
from threattune.sources.flows import load_nsl_kdd

HOSTILE_SUBJECT = '<script>document.title="owned"</script>'
HOSTILE_NOTE = '<img src=x onerror="document.title=1">'


@pytest.fixture(scope="module")
def kdd(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A model trained on 2,000 KDDTrain+ flows (no MLflow) and 60 KDDTest+ flows as JSON."""
    folder = tmp_path_factory.mktemp("service-model")
    train = samples.write_nsl_kdd_slice(data_root, folder / "train.txt", 2_000)
    task = samples.small_task(
        "svc", [train], reader="nsl-kdd", attack_mapping="nsl-kdd", operating_goal="fpr<=0.01"
    )
    with samples.single_thread_blas():
        result = training.train(task, output_dir=folder / "run", track=False)
    test = samples.write_nsl_kdd_slice(
        data_root, folder / "test.txt", 60, source=samples.NSL_KDD_TEST
    )
    flows = load_nsl_kdd(test).features.to_dict(orient="records")
    return SimpleNamespace(model=result.model_folder, flows=flows, test=test)


def _settings(tmp_path: Path, models: tuple[str, ...] = (), **options: Any) -> ServiceSettings:
    return ServiceSettings(models=models, store=f"sqlite:///{tmp_path / 'service.db'}", **options)


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A service with no model, and one key per scope combination."""
    yield from _running(_settings(tmp_path, limits=Limits(max_flows=3, max_emails=2)))


def _running(settings: ServiceSettings) -> Iterator[SimpleNamespace]:
    app = create_app(settings)
    keys = app.state.service.keys
    both, _ = keys.add("analyst", ["read", "write"])
    reader, _ = keys.add("viewer", ["read"])
    writer, _ = keys.add("ingest", ["write"])
    with TestClient(app) as client:
        _wait_ready(client)
        yield SimpleNamespace(
            client=client,
            app=app,
            both=both,
            reader=reader,
            writer=writer,
            store=app.state.service.store,
        )


def _wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


def _key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


# ----------------------------------------------------------------------------- keys and scopes


def test_api_keys_are_stored_only_as_salted_scrypt_hashes(tmp_path: Path) -> None:
    """The database holds the key id, a random salt and the scrypt digest, never the secret."""
    settings = _settings(tmp_path)
    app = create_app(settings)
    key, record = app.state.service.keys.add("soar", ["write"])
    other, other_record = app.state.service.keys.add("soar", ["write"])
    app.state.service.store.close()

    key_id, secret = parse_key(key)
    assert key_id == record.key_id and record.kdf.startswith("scrypt:")
    assert record.salt != other_record.salt and record.digest != other_record.digest
    assert record.digest == hash_secret(secret, bytes.fromhex(record.salt), record.kdf)
    database = (tmp_path / "service.db").read_bytes() + _wal_bytes(tmp_path)
    assert secret.encode() not in database and key.encode() not in database
    assert parse_key(other)[1].encode() not in database


def _wal_bytes(folder: Path) -> bytes:
    wal = folder / "service.db-wal"
    return wal.read_bytes() if wal.exists() else b""


def test_no_key_is_401_and_a_missing_scope_403(service: SimpleNamespace) -> None:
    """Each route names the scope it needs; read and write are independent scopes."""
    client = service.client
    verdict = {
        "verdicts": [{"alert_id": "a-1", "model_version": "m/1", "verdict": "fp", "analyst": "kim"}]
    }

    missing = client.get("/api/v1/alerts")
    assert missing.status_code == 401 and _error(missing)["field"] == "X-API-Key"
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    assert client.get("/api/v1/alerts", headers=_key("tt_nonsense")).status_code == 401
    forged = re.sub(r"\.(.).*", lambda m: "." + "A" * 43, service.both)
    assert client.get("/api/v1/alerts", headers=_key(forged)).status_code == 401

    read_only = client.post("/api/v1/verdicts", json=verdict, headers=_key(service.reader))
    assert read_only.status_code == 403
    write_only = client.get("/api/v1/alerts", headers=_key(service.writer))
    assert write_only.status_code == 403 and "'read'" in _error(write_only)["message"]
    assert client.get("/api/v1/alerts", headers=_key(service.reader)).status_code == 200
    bearer = {"Authorization": f"Bearer {service.both}"}
    assert client.post("/api/v1/verdicts", json=verdict, headers=bearer).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=_key(service.reader)).status_code == 200


def test_a_revoked_key_and_its_dashboard_sessions_stop_working(service: SimpleNamespace) -> None:
    client = service.client
    signed = client.post("/login", data={"key": service.reader}, follow_redirects=False)
    assert signed.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 200

    key_id = parse_key(service.reader)[0]
    assert service.store.revoke_key(key_id)

    assert client.get("/api/v1/alerts", headers=_key(service.reader)).status_code == 401
    after = client.get("/", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"] == "/login"


def test_dashboard_session_cookie_is_httponly_strict_and_read_only(
    service: SimpleNamespace,
) -> None:
    """A cookie can read the dashboard but never write, so a forged form cannot change data."""
    client = service.client
    assert client.post("/login", data={"key": service.writer}).status_code == 401
    assert client.post("/login", data={"key": "wrong"}).status_code == 401
    signed = client.post("/login", data={"key": service.both}, follow_redirects=False)
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert service.both.lower() not in cookie

    assert client.get("/api/v1/alerts").status_code == 200
    posted = client.post("/api/v1/verdicts", json={"verdicts": []})
    assert posted.status_code == 403 and "'write'" in _error(posted)["message"]


def test_a_login_link_works_once(service: SimpleNamespace) -> None:
    client = service.client
    link = client.post("/api/v1/login-links", headers=_key(service.reader)).json()["url"]
    first = client.get(link, follow_redirects=False)
    assert first.status_code == 303 and "tt_session=" in first.headers["set-cookie"]
    client.cookies.clear()
    assert client.get(link, follow_redirects=False).status_code == 401


def test_cli_serve_keys_add_list_revoke(tmp_path: Path) -> None:
    """``serve-keys add`` prints the key once; ``list`` shows ids and scopes, never keys."""
    runner = CliRunner()
    store = f"sqlite:///{tmp_path / 'keys.db'}"
    added = runner.invoke(
        cli_app,
        ["serve-keys", "add", "soar", "--scope", "write", "--scope", "read", "--store", store],
    )
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[0]
    key_id = parse_key(key)[0]

    listed = runner.invoke(cli_app, ["serve-keys", "list", "--store", store])
    assert key_id in listed.stdout and "read,write" in listed.stdout
    assert key.split(".")[1] not in listed.stdout
    assert runner.invoke(cli_app, ["serve-keys", "revoke", key_id, "--store", store]).exit_code == 0
    again = runner.invoke(cli_app, ["serve-keys", "revoke", key_id, "--store", store])
    assert again.exit_code != 0
    bad_scope = runner.invoke(
        cli_app, ["serve-keys", "add", "x", "--scope", "admin", "--store", store]
    )
    assert bad_scope.exit_code != 0


# ----------------------------------------------------------------------------- limits


def test_a_body_over_the_limit_is_413_before_parsing(tmp_path: Path) -> None:
    """Declared (Content-Length) and streamed (chunked) bodies are both cut at the limit."""
    settings = _settings(tmp_path, limits=Limits(max_body_bytes=2_000))
    for running in _running(settings):
        client, headers = running.client, _key(running.both)
        big = {"flows": [{"duration": 0, "padding": "x" * 3_000}]}
        declared = client.post("/api/v1/flows/score", json=big, headers=headers)
        assert declared.status_code == 413
        assert _error(declared)["field"] == "body" and _error(declared)["limit"] == 2_000

        chunks = (b'{"flows": [' + b'{"a": 1},' * 100 + b'{"a": 1}]}' for _ in range(3))
        streamed = client.post(
            "/api/v1/flows/score",
            content=chunks,
            headers={**headers, "content-type": "application/json"},
        )
        assert streamed.status_code == 413 and _error(streamed)["limit"] == 2_000
        assert streamed.headers["content-security-policy"].startswith("default-src 'self'")


def test_too_many_flows_emails_or_verdicts_is_413_naming_the_field(
    service: SimpleNamespace,
) -> None:
    client, headers = service.client, _key(service.both)
    flows = client.post("/api/v1/flows/score", json={"flows": [{}] * 4}, headers=headers)
    assert flows.status_code == 413
    assert (_error(flows)["field"], _error(flows)["limit"]) == ("flows", 3)
    assert _error(flows)["found"] == "4"

    emails = client.post(
        "/api/v1/emails/score", json={"messages": [{"raw": "x"}] * 3}, headers=headers
    )
    assert emails.status_code == 413 and _error(emails)["field"] == "messages"
    assert _error(emails)["limit"] == 2


def test_a_malformed_body_is_422_naming_the_field(service: SimpleNamespace) -> None:
    client, headers = service.client, _key(service.both)
    response = client.post("/api/v1/flows/score", json={"flows": "not a list"}, headers=headers)
    assert response.status_code == 422 and _error(response)["field"] == "flows"
    verdicts = client.post(
        "/api/v1/verdicts",
        headers=headers,
        json={
            "verdicts": [
                {"alert_id": "a-1", "model_version": "m/1", "verdict": "maybe", "analyst": "kim"}
            ]
        },
    )
    assert verdicts.status_code == 422 and _error(verdicts)["field"] == "verdict"


def test_emails_without_a_mail_model_are_503(service: SimpleNamespace) -> None:
    response = service.client.post(
        "/api/v1/emails/score",
        json={"messages": [{"raw": "Subject: hi\n\nhello"}]},
        headers=_key(service.both),
    )
    assert response.status_code == 503
    assert _error(response)["message"] == "no mail model configured"


# ----------------------------------------------------------------------------- the store


def test_the_sqlite_store_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    with ServiceStore(f"sqlite:///{tmp_path / 'service.db'}") as store:
        assert store.journal_mode() == "wal"
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2
    with sqlite3.connect(tmp_path / "service.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_alerts_and_verdicts_survive_a_restart(kdd: SimpleNamespace, tmp_path: Path) -> None:
    """What the service acknowledged is found by a new service on the same store."""
    settings = _settings(tmp_path, models=(str(kdd.model),))
    for first in _running(settings):
        scored = first.client.post(
            "/api/v1/flows/score", json={"flows": kdd.flows}, headers=_key(first.both)
        ).json()
        alert_ids = [r["alert_id"] for r in scored["results"] if r["alert_id"]]
        assert alert_ids and scored["model_version"] == "threattune-svc/local"
        posted = first.client.post(
            "/api/v1/verdicts",
            headers=_key(first.both),
            json={
                "verdicts": [
                    {
                        "alert_id": alert_ids[0],
                        "verdict": "fp",
                        "analyst": "kim",
                        "root_cause": "Backup job",
                        "note": "nightly",
                    }
                ]
            },
        )
        assert posted.json()["inserted"] == 1
        key = first.both

    app = create_app(settings)
    with TestClient(app) as client:
        alert = client.get(f"/api/v1/alerts/{alert_ids[0]}", headers=_key(key)).json()
        assert alert["model_version"] == "threattune-svc/local"
        assert alert["verdicts"][0]["verdict"] == "false-positive"
        assert alert["verdicts"][0]["root_cause"] == "backup-job"
        listed = client.get("/api/v1/alerts", params={"limit": 1000}, headers=_key(key)).json()
        assert {a["alert_id"] for a in listed["alerts"]} == set(alert_ids)


def test_scoring_json_and_csv_gives_one_result_per_flow(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    for running in _running(_settings(tmp_path, models=(str(kdd.model),))):
        client, headers = running.client, _key(running.both)
        as_json = client.post("/api/v1/flows/score", json={"flows": kdd.flows}, headers=headers)
        with kdd.test.open("rb") as handle:
            as_csv = client.post(
                "/api/v1/flows/score-file",
                headers=headers,
                files={"file": ("flows.txt", handle, "text/csv")},
            )
        assert as_json.status_code == as_csv.status_code == 200, as_csv.text
        json_results, csv_results = as_json.json()["results"], as_csv.json()["results"]
        assert len(json_results) == len(csv_results) == len(kdd.flows)
        assert [r["class"] for r in json_results] == [r["class"] for r in csv_results]
        model = FlowModel.load(kdd.model)
        for result in json_results:
            assert result["alert"] == (result["alert_id"] is not None)
            assert result["techniques"] == model.technique_labels()[result["class"]]

        bad = dict(kdd.flows[0], src_bytes="lots")
        refused = client.post(
            "/api/v1/flows/score", json={"flows": [kdd.flows[0], bad]}, headers=headers
        )
        assert refused.status_code == 422
        assert (_error(refused)["field"], _error(refused)["line"]) == ("src_bytes", 1)


def test_a_cascade_filters_the_alerts_of_the_version_it_was_trained_on(
    kdd: SimpleNamespace, data_root: Path, tmp_path: Path
) -> None:
    """`serve --cascade`: stage two filters the served model's alerts; only kept ones are stored."""
    import numpy as np

    from threattune.cascade import cascade_from_labels, load_segment

    model = FlowModel.load(kdd.model, with_baseline=False)
    segment_path = samples.write_nsl_kdd_slice(
        data_root, tmp_path / "segment.txt", 4_000, source=samples.NSL_KDD_TEST
    )
    segment = load_segment(model, segment_path)
    cascade, _, _ = cascade_from_labels(model, segment, first_slice=0.5)
    folder = cascade.save(tmp_path / "out" / "cascade")
    decided = cascade.decide(segment.features)
    flows = load_nsl_kdd(segment_path).features.to_dict(orient="records")
    assert decided.filtered.any()

    settings = _settings(tmp_path, models=(str(kdd.model),), cascades=(str(tmp_path / "out"),))
    for running in _running(settings):
        answer = running.client.post(
            "/api/v1/flows/score", json={"flows": flows}, headers=_key(running.both)
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        results = body["results"]
        assert body["cascade"] == str(folder)
        assert [r["alert"] for r in results] == decided.alerts.tolist()
        assert [r["stage_one_alert"] for r in results] == decided.stage_one.alerts.tolist()
        scores = [np.nan if r["stage_two_score"] is None else r["stage_two_score"] for r in results]
        assert np.allclose(scores, decided.stage_two_scores, equal_nan=True)
        assert body["alerts"] == int(decided.alerts.sum()) == len(running.store.alerts(limit=9999))

    with pytest.raises(ConfigError, match="not a threattune cascade folder"):
        _settings(tmp_path, models=(str(kdd.model),), cascades=(str(tmp_path),))


def test_hostile_text_in_alerts_and_verdicts_is_escaped_on_the_dashboard(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    for running in _running(_settings(tmp_path, models=(str(kdd.model),))):
        client, headers = running.client, _key(running.both)
        flows = [dict(f, sensor=HOSTILE_SUBJECT) for f in kdd.flows]
        results = client.post("/api/v1/flows/score", json={"flows": flows}, headers=headers).json()[
            "results"
        ]
        alert_id = next(r["alert_id"] for r in results if r["alert_id"])
        client.post(
            "/api/v1/verdicts",
            headers=headers,
            json={
                "verdicts": [
                    {"alert_id": alert_id, "verdict": "fp", "analyst": "kim", "note": HOSTILE_NOTE}
                ]
            },
        )

        page = client.get("/", headers=headers)
        assert page.status_code == 200
        assert "&lt;script&gt;document.title=&#34;owned&#34;&lt;/script&gt;" in page.text
        assert "&lt;img src=x onerror=&#34;document.title=1&#34;&gt;" in page.text
        assert "<script" not in page.text and "<img" not in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"


# ----------------------------------------------------------------------------- models


class _Registry:
    """A stand-in for the registry: an alias, and versions that load or fail."""

    def __init__(self, model: FlowModel) -> None:
        self.model = model
        self.alias = "1"
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def aliases(self, name: str) -> dict[str, str]:
        return {"champion": self.alias}

    def load(self, reference: str) -> FlowModel:
        self.loads.append(reference)
        if reference.rsplit("/", 1)[1] in self.broken:
            raise ValueError("trees.json is not valid JSON")
        return self.model


def test_an_alias_move_switches_versions_and_a_failed_load_keeps_the_old(
    kdd: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threattune import tracking

    registry = _Registry(FlowModel.load(kdd.model, with_baseline=False))
    monkeypatch.setattr(tracking, "aliases", registry.aliases)
    models = ModelSet(["models:/threattune-svc@champion"], loader=registry.load)
    served = models.models[0]

    models.check_now()
    assert served.current.model_version == "threattune-svc/1" and models.ready
    models.check_now()
    assert registry.loads == ["models:/threattune-svc/1"]

    registry.alias = "2"
    models.check_now()
    assert served.current.model_version == "threattune-svc/2" and not served.failing

    registry.alias, registry.broken = "3", {"3"}
    models.check_now()
    models.check_now()
    assert served.current.model_version == "threattune-svc/2"
    assert served.failing and served.last_error["version"] == "3"
    assert registry.loads.count("models:/threattune-svc/3") == 1

    registry.alias = "2"
    models.check_now()
    assert not served.failing and served.current.model_version == "threattune-svc/2"


def test_reload_failures_show_in_readiness_and_metrics(
    kdd: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threattune import tracking

    registry = _Registry(FlowModel.load(kdd.model, with_baseline=False))
    monkeypatch.setattr(tracking, "aliases", registry.aliases)
    settings = _settings(tmp_path, models=("models:/threattune-svc@champion",), reload_seconds=3600)
    app = create_app(settings, loader=registry.load)
    key, _ = app.state.service.keys.add("viewer", ["read"])
    with TestClient(app) as client:
        _wait_ready(client)
        registry.alias, registry.broken = "2", {"2"}
        app.state.service.models.check_now()

        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert ready["models"] == [
            {"name": "threattune-svc", "version": "1", "reload_failing": True}
        ]
        metrics = client.get("/metrics", headers=_key(key)).text
        assert 'threattune_model_reload_failing{model="threattune-svc"} 1.0' in metrics
        assert 'threattune_model_reload_failures_total{model="threattune-svc"} 1.0' in metrics
        assert 'threattune_model_version_info{model="threattune-svc",version="1"} 1.0' in metrics


def test_a_model_that_never_loads_keeps_the_service_unready(tmp_path: Path) -> None:
    settings = _settings(tmp_path, models=(str(tmp_path / "no-such-model"),))
    app = create_app(settings)
    key, _ = app.state.service.keys.add("analyst", ["read", "write"])
    with TestClient(app) as client:
        app.state.service.models.check_now()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        served = client.get("/api/v1/models", headers=_key(key)).json()["served"][0]
        assert served["reload_failing"] and "model not found" in served["last_error"]["message"]
        scored = client.post("/api/v1/flows/score", json={"flows": [{}]}, headers=_key(key))
        assert scored.status_code == 503 and "loaded" in _error(scored)["message"]


# ----------------------------------------------------------------------------- diagnoses, charts


def test_a_diagnosis_report_is_summarised_and_stored(service: SimpleNamespace) -> None:
    report = {
        "model": "/tmp/model",
        "current": "segment.csv",
        "rows_read": 900,
        "rows_diagnosed": 900,
        "severity": "high",
        "findings": [
            {
                "kind": "drift",
                "severity": "high",
                "subject": "src_bytes",
                "message": "src_bytes drifts",
                "evidence": {},
            }
        ],
        "drift": {
            "features": [
                {"feature": "src_bytes", "status": "drift", "psi": 0.9},
                {"feature": "duration", "status": "stable", "psi": 0.01},
                {"feature": "flag", "status": "untested"},
            ],
            "multivariate": {"auc": 0.81},
        },
        "estimate": {"precision": 0.9, "fpr": 0.02},
    }
    summary = summarise_diagnosis(report)
    assert summary["drifted_share"] == 0.5 and summary["drifted_features"] == ["src_bytes"]
    assert summary["findings_by_severity"]["high"] == 1
    mail = {"severity": "low", "findings": [], "unit": "messages",
            "drift": None, "text": {"embedding": {"auc": 0.7}}}  # fmt: skip
    assert summarise_diagnosis(mail)["multivariate_auc"] == 0.7
    assert summarise_diagnosis(mail)["drifted_share"] is None

    client, headers = service.client, _key(service.both)
    stored = client.post(
        "/api/v1/diagnoses",
        json=report,
        headers=headers,
        params={"model_version": "threattune-svc/4"},
    )
    assert stored.status_code == 200, stored.text
    listed = client.get("/api/v1/diagnoses", headers=headers).json()["diagnoses"]
    assert listed[0]["model_version"] == "threattune-svc/4"
    metrics = client.get("/metrics", headers=headers).text
    assert 'threattune_drift_feature_share{model="threattune-svc"} 0.5' in metrics
    assert 'threattune_drift_severity{model="threattune-svc"} 3.0' in metrics

    refused = client.post(
        "/api/v1/diagnoses",
        json={"severity": "bad"},
        headers=headers,
        params={"model_version": "m/1"},
    )
    assert refused.status_code == 422 and _error(refused)["field"] == "severity"
    not_a_report = client.post("/api/v1/diagnoses", json=[1], headers=headers)
    assert not_a_report.status_code == 422 and _error(not_a_report)["field"] == "body"


def test_stacked_bars_scale_to_the_tallest_bucket_and_group_small_series() -> None:
    from datetime import UTC, datetime, timedelta

    starts = [datetime(2025, 3, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(3)]
    series = {f"class-{i}": [float(i), 0.0, 1.0] for i in range(12)}
    chart = stacked_bars("k", "t", "d", starts, series, hourly=True, empty="none")

    assert len(chart.legend) == 10 and chart.legend[-1] == (OTHER, "other (3)")
    first = [b for b in chart.bars if b.x < chart.bars[0].x + 1]
    plot = chart.plot
    assert sum(b.height for b in first) == pytest.approx((plot["bottom"] - plot["top"]) * 66 / 100)
    assert stacked_bars("k", "t", "d", starts, {}, hourly=True, empty="none").empty == "none"
