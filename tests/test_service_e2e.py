"""The real service end to end: a subprocess on loopback, a registry, a browser.

A small NSL-KDD model is trained and registered into a private MLflow SQLite store, then
logged twice more as versions 2 and 3; version 3's trees are damaged on disk. ``threattune
serve`` runs as a subprocess on a free port, and the test waits for it by polling
``/readyz``. It scores slices of KDDTest+ as JSON and as a CSV upload, takes verdicts and a
diagnosis, is killed with SIGKILL and started again with everything still there, follows the
``champion`` alias from version 1 to 2, keeps version 2 when version 3 fails to load, and
serves a dashboard that headless Chromium renders with its charts and with hostile text shown
as text. The same service serves a tiny mail model folder beside it and scores emails as
JSON, mbox and ``.eml``, one with a hostile subject that the dashboard must show as text.

The steps run in order in one test, since they share the service and the alias. Without
Chromium the test is skipped at its browser step, after every other step has passed, unless
THREATTUNE_REQUIRE_BROWSER=1 (CI), when it fails. THREATTUNE_UPDATE_SCREENSHOT=1 copies the
screenshot to docs/img/dashboard.png.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import flow_samples as samples
from threattune import tracking, training
from threattune.service.keys import KeyRing
from threattune.service.store import ServiceStore
from threattune.sources.flows import load_nsl_kdd

NAME = "threattune-e2e"
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("THREATTUNE_CHROMIUM", "/usr/bin/chromium")
HOSTILE_HOST = '<script>document.title="owned"</script>'
HOSTILE_NOTE = '<img src=x onerror="document.title=1">'
HOSTILE_SUBJECT = '<script>document.title="phished"</script><img src=y onerror="alert(2)">'
MAIL_NAME = "threattune-phishing-tiny"


@pytest.fixture(scope="module")
def registry(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three registered versions of one small model; version 3 damaged; alias on 1."""
    folder = tmp_path_factory.mktemp("service-e2e")
    train = samples.write_nsl_kdd_slice(data_root, folder / "train.txt", 3_000)
    test = samples.write_nsl_kdd_slice(
        data_root, folder / "test.txt", 400, source=samples.NSL_KDD_TEST
    )
    task = samples.small_task(
        "e2e", [train], reader="nsl-kdd", attack_mapping="nsl-kdd", operating_goal="fpr<=0.01"
    )
    flows = load_nsl_kdd(test).features
    with samples.tracking_store(folder) as uri, samples.single_thread_blas():
        run = training.train(task, output_dir=folder / "run")
        for _ in (2, 3):
            with tracking.start_run("threattune-e2e", "same model, new version"):
                tracking.log_flow_model(
                    run.model_folder, registered_name=NAME, input_example=flows.head(3)
                )
        assert str(tracking.aliases(NAME)["champion"]) == "1"
        _damage("3")
        yield SimpleNamespace(
            folder=folder, uri=uri, test=test, model=run.model_folder, flows=flows
        )


def _damage(version: str) -> None:
    """Overwrite the trees of a registered version in the artifact store."""
    import mlflow

    uri = mlflow.MlflowClient().get_model_version_download_uri(NAME, version)
    trees = list(Path(uri.removeprefix("file://")).rglob("trees.json"))
    assert trees, f"no trees.json under {uri}"
    for path in trees:
        path.write_text("not a model", encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """``threattune serve`` as a subprocess, stopped by its PID."""

    def __init__(
        self, folder: Path, env: dict[str, str], store: str, models: list[str], *options: str
    ) -> None:
        self.folder, self.env, self.store = folder, env, store
        self.models, self.options = models, list(options)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = folder / f"serve-{self.port}.log"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "threattune.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            self.store,
            *self.options,
        ]
        for model in self.models:
            command += ["--model", model]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait(lambda r: r.status_code == 200, "/readyz")

    def wait(self, done: Any, path: str, **request: Any) -> httpx.Response:
        """Poll ``path`` until ``done(response)``; fail with the log if the process died."""
        deadline = time.monotonic() + 120
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the service exited ({self.process.returncode}):\n{self.logs()}")
            try:
                response = httpx.get(self.url + path, timeout=10, **request)
                if done(response):
                    return response
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{path} never became what the test waits for:\n{self.logs()}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture(scope="module")
def served(registry: SimpleNamespace, mail_model: Path) -> Iterator[SimpleNamespace]:
    """The service with the flow model by alias and the mail model folder, on a free port,
    with a read+write key and a read-only key."""
    folder = registry.folder
    env = {
        **samples.env_with_data(Path(os.environ["THREATTUNE_DATA"])),
        "MLFLOW_TRACKING_URI": registry.uri,
    }
    store = f"sqlite:///{folder / 'service.db'}"
    keys = _keys(store)
    service = Service(
        folder,
        env,
        store,
        [f"models:/{NAME}@champion", str(mail_model)],
        "--reload-seconds",
        "0.5",
        "--max-flows",
        "1000",
        "--max-emails",
        "5",
    )
    try:
        service.start()
        yield SimpleNamespace(
            service=service,
            write={"X-API-Key": keys["analyst"]},
            read={"X-API-Key": keys["viewer"]},
            state={},
        )
    finally:
        service.stop()


def _keys(store: str) -> dict[str, str]:
    with ServiceStore(store) as service_store:
        ring = KeyRing(service_store)
        return {
            name: ring.add(name, scopes)[0]
            for name, scopes in (("analyst", ["read", "write"]), ("viewer", ["read"]))
        }


def _post(served: SimpleNamespace, path: str, **request: Any) -> httpx.Response:
    request.setdefault("headers", served.write)
    return httpx.post(served.service.url + path, timeout=60, **request)


def _get(served: SimpleNamespace, path: str, **request: Any) -> httpx.Response:
    request.setdefault("headers", served.read)
    return httpx.get(served.service.url + path, timeout=60, **request)


# ----------------------------------------------------------------------------- the scenario


def test_service_end_to_end(served: SimpleNamespace, registry: Any, tmp_path: Path) -> None:
    """One scenario, in order (its steps share the service and the registry's alias)."""
    _scores_real_flows_as_json_and_csv(served, registry)
    _verdicts_and_a_diagnosis_survive_a_killed_service(served, registry)
    _follows_the_alias_and_keeps_serving_when_a_version_fails(served, registry)
    _openapi_schema_and_limits(served)
    _scores_emails_as_json_mbox_and_eml(served)
    _dashboard_renders_its_charts_in_chromium(served, tmp_path)


def _scores_real_flows_as_json_and_csv(served: SimpleNamespace, registry: Any) -> None:
    flows = registry.flows.head(200).to_dict(orient="records")
    flows = [dict(f, sensor=HOSTILE_HOST) if i % 2 else f for i, f in enumerate(flows)]
    as_json = _post(served, "/api/v1/flows/score", json={"flows": flows})
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert body["model_version"] == f"{NAME}/1" and body["scored"] == 200
    assert body["alerts"] == sum(r["alert"] for r in body["results"]) > 0

    with registry.test.open("rb") as handle:
        as_csv = _post(
            served,
            "/api/v1/flows/score-file",
            files={"file": ("KDDTest-slice.txt", handle, "text/csv")},
        )
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.json()["scored"] == len(registry.flows)
    assert [r["class"] for r in as_csv.json()["results"][:200]] == [
        r["class"] for r in body["results"]
    ]
    served.state["alerts"] = [r for r in body["results"] if r["alert_id"]]


def _verdicts_and_a_diagnosis_survive_a_killed_service(
    served: SimpleNamespace, registry: Any
) -> None:
    """SIGKILL right after the answers: a new process finds every acknowledged record."""
    from threattune.diagnosis.diagnose import diagnose

    alerts = served.state["alerts"]
    labels = ["tp", "fp", "btp"]
    verdicts = [
        {
            "alert_id": a["alert_id"],
            "verdict": labels[i % 3],
            "analyst": "kim",
            "root_cause": "scanner" if i % 3 == 1 else None,
            "note": HOSTILE_NOTE if i == 1 else "checked",
        }
        for i, a in enumerate(alerts[:12])
    ]
    posted = _post(served, "/api/v1/verdicts", json={"verdicts": verdicts})
    assert posted.status_code == 200 and posted.json()["inserted"] == len(verdicts)

    with samples.single_thread_blas():
        report = diagnose(
            registry.model,
            None,
            registry.test,
            "attack",
            max_rows=400,
            multivariate=False,
            adversarial=False,
        ).to_dict()
    stored = _post(
        served,
        "/api/v1/diagnoses",
        content=json.dumps(report),
        headers={**served.write, "content-type": "application/json"},
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["model_version"] == f"{NAME}/1"

    service = served.service
    service.stop(signal.SIGKILL)
    service.start()

    first = _get(served, f"/api/v1/alerts/{alerts[1]['alert_id']}").json()
    assert first["model_version"] == f"{NAME}/1"
    assert [v["verdict"] for v in first["verdicts"]] == ["false-positive"]
    assert first["verdicts"][0]["note"] == HOSTILE_NOTE
    stats = _get(served, "/api/v1/verdicts/stats").json()
    assert stats["by_model_version"][f"{NAME}/1"]["verdicts"] == len(verdicts)
    diagnoses = _get(served, "/api/v1/diagnoses").json()["diagnoses"]
    assert [d["model_version"] for d in diagnoses] == [f"{NAME}/1"]
    metrics = _get(served, "/metrics").text
    assert f'threattune_drift_severity{{model="{NAME}"}}' in metrics


def _follows_the_alias_and_keeps_serving_when_a_version_fails(
    served: SimpleNamespace, registry: Any
) -> None:
    flows = [dict(f, sensor=HOSTILE_HOST) for f in registry.flows.head(20).to_dict("records")]
    tracking.set_alias(NAME, "champion", "2")
    served.service.wait(lambda r: r.json()["models"][0]["version"] == "2", "/readyz")
    scored = _post(served, "/api/v1/flows/score", json={"flows": flows}).json()
    assert scored["model_version"] == f"{NAME}/2"

    tracking.set_alias(NAME, "champion", "3")
    ready = served.service.wait(lambda r: r.json()["status"] == "degraded", "/readyz")
    assert ready.status_code == 200 and ready.json()["models"][0]["version"] == "2"
    models = _get(served, "/api/v1/models").json()["served"][0]
    assert models["reload_failing"] and models["last_error"]["version"] == "3"
    assert models["alias_version"] == "3" and models["version"] == "2"
    scored = _post(served, "/api/v1/flows/score", json={"flows": flows}).json()
    assert scored["model_version"] == f"{NAME}/2"
    metrics = _get(served, "/metrics").text
    assert f'threattune_model_reload_failing{{model="{NAME}"}} 1.0' in metrics
    history = {v["model_version"] for v in _get(served, "/api/v1/models").json()["history"]}
    assert history == {f"{NAME}/1", f"{NAME}/2", f"{MAIL_NAME}/local"}


def _openapi_schema_and_limits(served: SimpleNamespace) -> None:
    schema = httpx.get(served.service.url + "/openapi.json", timeout=30).json()
    assert {"/api/v1/flows/score", "/api/v1/verdicts", "/api/v1/diagnoses"} <= set(schema["paths"])
    too_many = _post(served, "/api/v1/flows/score", json={"flows": [{}] * 1001})
    assert too_many.status_code == 413 and too_many.json()["error"]["limit"] == 1000
    assert httpx.get(served.service.url + "/docs", timeout=30).status_code == 404


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _login_link(served: SimpleNamespace) -> str:
    link = _post(served, "/api/v1/login-links", headers=served.read)
    assert link.status_code == 200, link.text
    return served.service.url + link.json()["url"]


def _require_browser() -> None:
    if not Path(CHROMIUM).is_file():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("THREATTUNE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; THREATTUNE_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)


def _dashboard_dom(served: SimpleNamespace, tmp_path: Path) -> str:
    """The dashboard's DOM after Chromium has loaded it, signed in by a one-time link."""
    _require_browser()
    dumped = _chromium("--dump-dom", _login_link(served), profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    return dumped.stdout


def _dashboard_renders_its_charts_in_chromium(served: SimpleNamespace, tmp_path: Path) -> None:
    """The page signs in with a one-time link, draws every chart, shows hostile text as text."""
    dom = _dashboard_dom(served, tmp_path)
    assert "Served models and operating points" in dom, dom[:2000]
    for chart in ("volume-class", "volume-technique", "false-positives", "drift"):
        start = dom.index(f'data-chart="{chart}"')
        figure = dom[start : dom.index("</figure>", start)]
        assert "<svg" in figure and ("<rect" in figure or "<polyline" in figure), chart
    assert dom.count('class="bar"') >= 2 and dom.count('class="series"') >= 2
    for hostile in (HOSTILE_HOST, HOSTILE_NOTE, HOSTILE_SUBJECT):
        assert html.escape(hostile, quote=False) in dom, hostile
    assert "<script" not in dom and "<img" not in dom
    assert "<title>Dashboard · threattune</title>" in dom  # no script rewrote the title

    shot = tmp_path / "dashboard.png"
    taken = _chromium(
        f"--screenshot={shot}",
        "--window-size=1280,1800",
        "--hide-scrollbars",
        _login_link(served),
        profile=tmp_path / "profile-shot",
    )
    assert taken.returncode == 0 and shot.stat().st_size > 20_000, taken.stderr[-2000:]
    if os.environ.get("THREATTUNE_UPDATE_SCREENSHOT") == "1":
        target = REPO / "docs" / "img" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


# ----------------------------------------------------------------------------- email


PHISH = """\
From: IT Service Desk <it-desk@example.org>
To: kim@example.com
Subject: {subject}
Message-ID: <{number}@example.org>

Your mailbox is suspended. Verify your password now at http://login.example.net/verify
"""


@pytest.fixture(scope="module")
def mail_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mail model folder: the shipped encoder, a head fitted on six lines.

    Its operating point is a threshold of 0, so that every message is an alert; what is
    tested here is the service, not the model's judgement.
    """
    from threattune.mail_model import MailModel
    from threattune.models.text import TextClassifier, TextSettings

    settings = TextSettings(
        max_length=16, head_tokens=8, trainable_layers=0, epochs=1, batch_size=4
    )
    lures = ["verify your password now", "your mailbox is suspended log in"]
    wanted = ["minutes of the meeting attached", "lunch with the network team"]
    labels = ["phishing"] * 2 + ["legitimate"] * 2
    with samples.single_thread_blas():
        classifier = TextClassifier(settings).fit(
            lures + wanted, labels, lures + wanted, labels, progress=False
        )
    model = MailModel(
        classifier=classifier,
        baseline=None,
        manifest={
            "task": "phishing-tiny",
            "benign_class": "legitimate",
            "positive_class": "phishing",
            "operating_point": {"threshold": 0.0, "goal_text": "every message"},
        },
        attack_mapping={
            "phishing": [{"id": "T1566", "name": "Phishing", "tactics": ["initial-access"]}],
            "legitimate": [],
        },
    )
    return model.save(tmp_path_factory.mktemp("mail-model") / "model")


def _scores_emails_as_json_mbox_and_eml(served: SimpleNamespace) -> None:
    """Emails beside flows: a hostile subject is stored as it came, shown as text later."""
    message = PHISH.format(subject=HOSTILE_SUBJECT, number=1)
    as_json = _post(served, "/api/v1/emails/score", json={"messages": [{"raw": message}]})
    assert as_json.status_code == 200, as_json.text
    result = as_json.json()["results"][0]
    assert as_json.json()["model_version"] == f"{MAIL_NAME}/local"
    assert result["alert_id"] and result["urls"] == ["hxxp://login[.]example[.]net/verify"]
    assert result["techniques"].startswith("T1566")

    mbox = "".join(
        "From it-desk@example.org Mon Mar  3 09:30:00 2025\n"
        + PHISH.format(subject=f"Reset {n}", number=n + 10)
        + "\n"
        for n in range(3)
    )
    from_mbox = _post(
        served,
        "/api/v1/emails/score-file",
        files={"file": ("inbox.mbox", mbox.encode(), "application/mbox")},
    )
    assert from_mbox.status_code == 200 and from_mbox.json()["scored"] == 3, from_mbox.text
    eml = PHISH.format(subject="Reset", number=99).encode()
    from_eml = _post(
        served, "/api/v1/emails/score-file", files={"file": ("one.eml", eml, "message/rfc822")}
    )
    assert from_eml.status_code == 200 and from_eml.json()["scored"] == 1
    too_many = _post(served, "/api/v1/emails/score", json={"messages": [{"raw": "x"}] * 6})
    assert too_many.status_code == 413 and too_many.json()["error"]["field"] == "messages"

    stored = _get(served, f"/api/v1/alerts/{result['alert_id']}").json()
    assert stored["summary"]["subject"] == HOSTILE_SUBJECT and stored["kind"] == "mail"
