"""A phishing model that never saw Phishing Pot, for diagnosing and adapting to new mail.

Trains the transformer as ``threattune train phishing`` does (grouped split, validation picks
the epoch and the operating point, reference embeddings stored), on the public corpus with the
Phishing Pot source left out, together with every campaign it shares with other sources, so
that no copy of its lures is learnt. Phishing Pot then plays the new mail:

    THREATTUNE_DATA=../shared/data python benchmarks/mail_diagnosis.py --output /tmp/no-pot
    threattune diagnose --model /tmp/no-pot/model \\
        --current ../shared/data/phishing_pot_eml/phishing_pot_2019_2024.tar.xz \\
        --current ../shared/data/spamassassin_public_corpus/easy_ham_2.tar.xz \\
        --labels phishing=../shared/data/phishing_pot_eml/phishing_pot_2019_2024.tar.xz \\
        --labels legitimate=../shared/data/spamassassin_public_corpus/easy_ham_2.tar.xz \\
        --output /tmp/no-pot/diagnosis
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from threattune.mail_training import _train_into
from threattune.models.text import TextSettings
from threattune.phishing import PhishingCorpus, build_corpus

HELD_OUT = "phishing_pot"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-train", type=int, default=4_000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    corpus = build_corpus(seed=args.seed)
    table = corpus.table
    held = (table["source"] == HELD_OUT).to_numpy()
    shared = table["campaign"].isin(set(table.loc[held, "campaign"])).to_numpy()
    kept = table[~held & ~shared].reset_index(drop=True)
    print(f"corpus {len(table):,} messages; left out {int(held.sum()):,} of {HELD_OUT} and "
          f"{int((shared & ~held).sum()):,} of other sources in its campaigns")  # fmt: skip
    settings = TextSettings(
        max_length=args.max_length,
        head_tokens=min(args.max_length * 3 // 4, args.max_length - 2),
        epochs=args.epochs,
        seed=args.seed,
    )
    result = _train_into(
        PhishingCorpus(table=kept),
        args.output,
        settings,
        args.max_train,
        "fpr<=0.01",
        args.seed,
        progress=False,
    )
    summary = {
        "seconds": round(time.perf_counter() - started, 1),
        "split": {k: v for k, v in result.split.items() if not isinstance(v, dict)},
        "test": result.test,
        "operating_point": result.operating_point,
        "left_out": {"source": HELD_OUT, "messages": int(held.sum()),
                     "shared_campaign_messages": int((shared & ~held).sum())},
        "labels_train": {str(k): int(v) for k, v in
                         kept["label"].value_counts().items()},
    }  # fmt: skip
    print(json.dumps(summary, indent=2, default=float))
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"model: {result.model_folder}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
