"""Adaptation of a mail model: the top layer trained further on labelled new mail.

The constructed shift: an organisation's own IT notices (password expiry, MFA enrolment,
quota warnings) are legitimate, but read like the lures the tiny model was trained on, so it
alerts on many of them. A few hundred labelled messages (the notices beside Phishing Pot lures
the model never saw) teach it otherwise.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from test_text_diagnosis import _environment, _write, tiny_mail_model
from threattune import tracking
from threattune.cli import app
from threattune.errors import ConfigError, DataError
from threattune.mail_model import MailModel
from threattune.models.text import TextClassifier
from threattune.sources.mail import MailReader
from threattune.text_adaptation import adapt_mail

runner = CliRunner()
POT = "phishing_pot_eml/phishing_pot_2019_2024.tar.xz"

_SYSTEMS = ["VPN", "payroll portal", "HR system", "mailbox", "laptop", "intranet", "Wi-Fi",
            "expense tool", "CRM", "file share"]  # fmt: skip
_NOTICES = [
    "your password for the {s} expires in {d} days; please change it from the self-service "
    "page before it locks",
    "please confirm your account details for the {s} so that access keeps working after the "
    "upgrade on {day}",
    "your {s} is almost full; verify the storage settings and sign in again to avoid losing access",
    "security notice: a new sign-in to the {s} was detected from a new device; review the "
    "activity and confirm it was you",
    "action required: enrol in multi-factor authentication for the {s} by {day} or your "
    "account will be suspended",
    "the {s} certificate was renewed; click the link on the portal to update your credentials "
    "today",
]
_PEOPLE = ["Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_SUBJECTS = ["account notice", "action required", "security update", "please verify"]


def _notices(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """IT service-desk notices, varied in system, wording, person and day."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        system = str(rng.choice(_SYSTEMS))
        text = str(rng.choice(_NOTICES)).format(
            s=system, d=int(rng.integers(2, 14)), day=str(rng.choice(_DAYS))
        )
        subject = f"{system.title()}: {rng.choice(_SUBJECTS)}"
        body = (f"Hello {rng.choice(_PEOPLE)}, {text}. Thank you, IT Service Desk, ticket "
                f"{rng.integers(1000, 9999)}.")  # fmt: skip
        out.append((subject, body))
    return out


@pytest.fixture(scope="module")
def new_mail(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Labelled new mail: 200 IT notices (legitimate) and 200 Phishing Pot lures."""
    folder = tmp_path_factory.mktemp("new-mail")
    lures = islice(MailReader().read(data_root / POT), 200, 400)
    return {
        "legitimate": _write(folder / "notices", _notices(200)),
        "phishing": _write(folder / "lures", [(m.subject, m.text) for m in lures]),
    }


@pytest.fixture(scope="module")
def champion(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mail_model(tmp_path_factory)[0]


def test_adapt_registers_a_challenger_that_cuts_false_positives(
    champion: Path, new_mail: dict[str, Path], mlflow_uri: str, tmp_path: Path
) -> None:
    with _environment(), tracking.start_run("threattune/phishing", run_name="train"):
        first = tracking.log_mail_model(champion, registered_name="threattune-phishing")
    assert first is not None
    tracking.set_alias(first.name, "champion", first.version)

    output = tmp_path / "adapted"
    with _environment():
        result = runner.invoke(app, [
            "adapt", "--model", "models:/threattune-phishing@champion",
            "--sample", f"legitimate={new_mail['legitimate']}",
            "--sample", f"phishing={new_mail['phishing']}", "--output", str(output),
        ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "registered threattune-phishing version 2 as challenger" in result.output
    aliases = {k: str(v) for k, v in tracking.aliases("threattune-phishing").items()}
    assert aliases == {"champion": first.version, "challenger": "2"}

    report = json.loads((output / "adaptation.json").read_text())
    equal = report["at_equal_recall"]
    assert report["before"]["fpr"] > 0.2
    assert equal["fpr_after"] < report["before"]["fpr"] / 3
    assert equal["recall"] >= report["before"]["recall"] - 1e-9
    assert report["epochs_kept"] >= 1
    assert report["split"]["measure"] > 150 and report["evaluation_rows"] > 150

    adapted = tracking.open_model("models:/threattune-phishing@challenger", with_baseline=False)
    assert isinstance(adapted, MailModel)
    assert adapted.classes == ["legitimate", "phishing"]
    assert adapted.manifest["adapted_from"] == "models:/threattune-phishing@champion"
    assert adapted.operating_point["threshold"] == pytest.approx(report["threshold"])
    stored = adapted.reference_embeddings()
    assert stored["embeddings"].shape[0] == report["sample_rows"]
    original = MailModel.load(champion, with_baseline=False)
    assert original.classifier.history.best_epoch == 1  # the champion's folder is untouched


def test_continue_training_keeps_the_start_when_nothing_helps(champion: Path) -> None:
    with _environment():
        classifier = TextClassifier.load(champion / "transformer")
        before = classifier.predict_proba(["verify your account now", "lunch on friday?"])
        history = classifier.continue_training(
            ["verify your account now"] * 4 + ["lunch on friday?"] * 4,
            ["phishing"] * 4 + ["legitimate"] * 4,
            ["lunch on friday?", "verify your account now"],
            ["phishing", "legitimate"],
            epochs=1,
            learning_rate=1e-12,
            head_learning_rate=1e-12,
        )
        after = classifier.predict_proba(["verify your account now", "lunch on friday?"])
    assert history.best_epoch == 0 and history.epochs[0]["epoch"] == 0
    np.testing.assert_allclose(after, before, atol=1e-6)
    with pytest.raises(DataError, match="no class for"):
        classifier.continue_training(["a"], ["spam"], ["b"], ["legitimate"])


def test_adapt_refuses_labels_the_model_lacks(
    champion: Path, new_mail: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="not a class of the model"):
        adapt_mail(champion, [f"spam={new_mail['legitimate']}"], output_dir=tmp_path)
