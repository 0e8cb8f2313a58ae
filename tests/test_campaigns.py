"""Campaign grouping and the grouped split, on messages written in the test."""

from __future__ import annotations

import time

import numpy as np
import pytest

from threattune.campaigns import (
    campaign_stats,
    group_campaigns,
    grouped_split,
    normalise_text,
)

LURE = (
    "Dear customer, we detected unusual sign-in activity on your account from a new device in "
    "another country. To keep your account safe we have limited access until you confirm your "
    "identity. Please follow the secure link below within 24 hours and enter your password and "
    "card details to restore full access. If you do not confirm, your account will be closed "
    "and any remaining balance will be held for review by our security department. Thank you "
    "for banking with us. Customer Protection Team"
)
OTHER = (
    "Hi team, the quarterly planning meeting moves to Thursday at ten in the large room on the "
    "third floor. Please bring the draft budget figures and the list of open hiring requests so "
    "that we can agree on priorities before the board review next month. Lunch will be served "
    "after the meeting. Let me know if you cannot attend and I will share the notes afterwards."
)


def _words(seed: int, count: int = 80) -> str:
    """Random words of letters only (digits would all normalise to one placeholder)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return " ".join("".join(rng.choice(letters, size=6)) for _ in range(count))


def test_normalise_masks_links_addresses_and_numbers() -> None:
    text = "Pay $1,250 to bob@evil.example via https://x.example/a?id=9 NOW!"
    assert normalise_text(text) == "pay 0 0 to emailaddr via urllink now"
    assert normalise_text("a b c d", max_words=2) == "a b"


def test_exact_duplicates_are_one_campaign() -> None:
    texts = [
        LURE,
        LURE.upper().replace(" ", "   "),
        LURE.replace("24 hours", "48 hours"),
        OTHER,
    ]
    campaigns = group_campaigns(texts)

    assert campaigns.exact[0] == campaigns.exact[1] == campaigns.exact[2]
    assert campaigns.ids[0] == campaigns.ids[1] == campaigns.ids[2]
    assert campaigns.ids[3] != campaigns.ids[0]
    assert campaigns.stats["exact_duplicate_messages"] == 2


def test_near_duplicates_are_one_campaign() -> None:
    variant = LURE.replace("Dear customer", "Dear Alice Smith").replace(
        "Customer Protection Team", "Security Team"
    )
    texts = [LURE, variant, OTHER, _words(1)]
    campaigns = group_campaigns(texts)

    assert campaigns.exact[0] != campaigns.exact[1]
    assert campaigns.ids[0] == campaigns.ids[1]
    assert len(set(campaigns.ids.tolist())) == 3
    assert campaigns.stats["near_duplicate_unions"] >= 1


def test_messages_sharing_half_their_text_stay_apart() -> None:
    half = len(LURE) // 2
    texts = [LURE, LURE[:half] + " " + OTHER]
    campaigns = group_campaigns(texts)
    assert campaigns.ids[0] != campaigns.ids[1]


def test_chains_of_near_duplicates_are_closed_transitively() -> None:
    base = _words(7, 200).split()
    replacement = _words(8, 200).split()
    texts = [" ".join(replacement[: step * 8] + base[step * 8 :]) for step in range(6)]
    texts.append(_words(9, 200))
    campaigns = group_campaigns(texts)

    assert len(set(campaigns.ids[:6].tolist())) == 1
    assert campaigns.ids[6] != campaigns.ids[0]
    ends = group_campaigns([texts[0], texts[5]])
    assert ends.ids[0] != ends.ids[1]


def test_short_and_empty_messages() -> None:
    campaigns = group_campaigns(["hi", "hi", "hello there", "", ""])
    assert campaigns.ids.tolist() == [0, 0, 1, 2, 2]


def test_campaign_stats() -> None:
    stats = campaign_stats([0, 0, 0, 1, 2, 2])
    assert stats["campaigns"] == 3
    assert stats["singletons"] == 1
    assert stats["largest"] == 3
    assert stats["messages_in_multi"] == 5


def test_grouped_split_keeps_campaigns_whole_and_stratifies() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(600), rng.integers(1, 6, size=600))
    labels = np.where(groups % 3 == 0, "phishing", "legitimate")
    split = grouped_split(labels, groups, test_fraction=0.2, validation_fraction=0.1, seed=3)

    assert split.spanning(groups) == 0
    positions = np.concatenate([split.train, split.validation, split.test])
    assert np.array_equal(np.sort(positions), np.arange(len(labels)))
    for label in ("phishing", "legitimate"):
        total = (labels == label).sum()
        in_test = (labels[split.test] == label).sum()
        in_validation = (labels[split.validation] == label).sum()
        assert abs(in_test / total - 0.2) < 0.03
        assert abs(in_validation / total - 0.1) < 0.03
    assert split.stats["test"]["campaigns"] == len(np.unique(groups[split.test]))


def test_grouped_split_is_seeded() -> None:
    groups = np.arange(400) // 2
    labels = np.where(groups % 2 == 0, "phishing", "legitimate")
    first = grouped_split(labels, groups, 0.2, 0.2, seed=1)
    again = grouped_split(labels, groups, 0.2, 0.2, seed=1)
    other = grouped_split(labels, groups, 0.2, 0.2, seed=2)

    assert np.array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)


def test_grouped_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError):
        grouped_split(["a", "b"], [0, 1], test_fraction=0.6, validation_fraction=0.5)
    with pytest.raises(ValueError):
        grouped_split(["a", "b"], [0], test_fraction=0.2)


def test_fifteen_thousand_messages_group_quickly() -> None:
    templates = [_words(seed, 120).split() for seed in range(300)]
    rng = np.random.default_rng(0)
    texts = []
    for index in range(15_000):
        words = list(templates[index % 300])
        words[int(rng.integers(0, 120))] = "name" + "abcdefghij"[index % 10]
        texts.append(" ".join(words) + f" http://x{index}.example/login")
    started = time.perf_counter()
    campaigns = group_campaigns(texts)
    seconds = time.perf_counter() - started

    assert seconds < 45
    assert campaigns.stats["campaigns"] == 300
