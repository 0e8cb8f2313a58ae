"""The TF-IDF baseline: fitting, choosing C on validation, skops round trip, explanations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from threattune.errors import DataError, ModelError
from threattune.models.text_baseline import TextBaseline, binary_scores, normalise_for_model

LURES = [
    "verify your account password now or it will be suspended",
    "urgent: confirm your bank card details at the secure link",
    "your mailbox is full, log in here to keep receiving mail",
    "unusual sign-in activity, reset your password immediately",
    "your parcel is held, pay the customs fee with your card",
    "account locked: confirm your identity to restore access",
]
ORDINARY = [
    "minutes of the budget meeting are attached for review",
    "can we move lunch to friday? the room is booked thursday",
    "the build is green again after the dependency update",
    "please review the draft contract before the call tomorrow",
    "thanks for the slides, I added two charts on page four",
    "reminder: the team offsite starts at nine on monday",
]


def _messages(copies: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(copies):
        for lure, ordinary in zip(LURES, ORDINARY, strict=True):
            extra = " ".join(rng.choice(["today", "team", "please", "note", "hello"], size=3))
            texts += [f"{lure} {extra}", f"{ordinary} {extra}"]
            labels += ["phishing", "legitimate"]
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def fitted() -> tuple[TextBaseline, list[str]]:
    texts, labels = _messages(8, seed=0)
    validation_texts, validation_labels = _messages(2, seed=1)
    model = TextBaseline(c_grid=(0.1, 1.0, 10.0), min_df=1).fit(
        texts, labels, validation_texts=validation_texts, validation_labels=validation_labels
    )
    test_texts, _ = _messages(1, seed=2)
    return model, test_texts


def test_fit_chooses_c_on_validation(fitted: tuple[TextBaseline, list[str]]) -> None:
    model, test_texts = fitted
    assert set(model.validation_f1) == {0.1, 1.0, 10.0}
    assert model.c == max(model.validation_f1, key=lambda c: (model.validation_f1[c], -c))
    assert model.classes == ["legitimate", "phishing"]
    predicted = model.predict(test_texts)
    assert (predicted[0::2] == "phishing").all()
    assert (predicted[1::2] == "legitimate").all()


def test_save_load_gives_identical_probabilities(
    fitted: tuple[TextBaseline, list[str]], tmp_path: Path
) -> None:
    model, test_texts = fitted
    path = model.save(tmp_path / "text_baseline.skops")
    loaded = TextBaseline.load(path)

    assert np.array_equal(model.predict_proba(test_texts), loaded.predict_proba(test_texts))
    assert loaded.c == model.c
    assert loaded.validation_f1 == model.validation_f1
    assert path.read_bytes()[:2] == b"PK"


def test_load_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        TextBaseline.load(tmp_path / "absent.skops")
    with pytest.raises(ModelError):
        TextBaseline(c_grid=(1.0,)).top_features()


def test_top_features_name_the_lure(fitted: tuple[TextBaseline, list[str]]) -> None:
    model, _ = fitted
    top = model.top_features(10)
    assert set(top) == {"phishing", "legitimate"}
    phishing_words = " ".join(name for name, _ in top["phishing"])
    assert any(word in phishing_words for word in ("your", "password", "confirm", "account"))
    assert all(weight > 0 for _, weight in top["phishing"])


def test_three_classes(tmp_path: Path) -> None:
    texts, labels = _messages(4, seed=0)
    texts += ["cheap watches and pills, best prices, buy now"] * 12
    labels = np.concatenate([labels, ["spam"] * 12])
    model = TextBaseline(c_grid=(1.0,), min_df=1).fit(
        texts, labels, validation_texts=texts, validation_labels=labels
    )
    assert model.classes == ["legitimate", "phishing", "spam"]
    assert model.predict_proba(texts[:3]).shape == (3, 3)
    assert set(model.top_features(3)) == {"legitimate", "phishing", "spam"}
    loaded = TextBaseline.load(model.save(tmp_path / "three.skops"))
    assert np.array_equal(loaded.positive_proba(texts), model.positive_proba(texts))


def test_needs_positive_messages() -> None:
    with pytest.raises(DataError):
        TextBaseline().fit(
            ["a", "b"], ["legitimate"] * 2, validation_texts=[], validation_labels=[]
        )


def test_normalisation_hides_corpus_formatting() -> None:
    assert normalise_for_model("Let's pay $1,250 NOW!") == normalise_for_model(
        "let ' s pay $ 1 , 250 now !"
    )


def test_binary_scores() -> None:
    scores = binary_scores([True, True, False, False], [0.9, 0.4, 0.6, 0.1])
    assert scores["precision"] == 0.5
    assert scores["recall"] == 0.5
    assert scores["fpr"] == 0.5
    assert scores["auc"] == 0.75
