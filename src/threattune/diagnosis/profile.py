"""Reference profile: what the training data looked like, kept small enough to ship with a model.

A drift diagnosis compares a new network segment with the data a model was trained on. Training
sets are large and often not at hand where the model runs, so the comparison works against a
:class:`ReferenceProfile` built once at training time:

* per numeric feature, fixed bin edges and the reference count in every bin. Edges sit at
  quantiles of the reference, ties merged, so that a mostly-zero byte count gets one bin for
  its zeros and the remaining bins share the rest. Two outer bins hold values below and above the
  reference range, and NaN and infinity have a bin each;
* per categorical feature, the counts of the ``top_k`` most frequent categories and of all others
  together. Missing values form a category of their own;
* a uniform, seeded sample of at most ``sample_size`` reference rows for the two-sample tests and
  the domain classifier.

The profile is plain JSON (no pickle), so it can be stored next to a model, diffed and read by
other tools. It is built in two passes over the rows: the first draws the sample and counts
categories, the second counts numeric bins on edges taken from the sample. Both passes work chunk
by chunk (:meth:`ReferenceProfile.from_chunks`), so a training set need not fit in memory.

>>> import numpy as np, pandas as pd
>>> frame = pd.DataFrame({"bytes": np.arange(1000.0), "proto": ["tcp", "udp"] * 500})
>>> profile = ReferenceProfile.from_frame(frame, categorical=["proto"])
>>> profile.feature("proto").categories
('tcp', 'udp')
>>> ReferenceProfile.from_dict(profile.to_dict()).n_rows
1000
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from threattune.errors import ConfigError, DataError

__all__ = [
    "MISSING",
    "OTHER",
    "PREDICTION",
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "ReferenceProfile",
    "category_counts",
    "category_labels",
    "numeric_values",
]

logger = logging.getLogger(__name__)

FORMAT = "threattune.reference-profile"
VERSION = 1
MISSING = "<missing>"
"""The category that missing values of a categorical feature fall into."""
OTHER = "<other>"
"""The bucket of all categories outside a feature's ``top_k``."""
PREDICTION = "prediction"
"""The feature name under which a profile keeps the model's reference predictions."""

_EDGE_SAMPLE_MIN = 50_000
_MAX_TOP_K = 250


def numeric_values(
    values: pd.Series | np.ndarray,
    *,
    name: str,
    errors: Literal["raise", "warn", "coerce"] = "raise",
) -> np.ndarray:
    """A numeric feature as float64, missing values as NaN.

    Text that does not parse as a number raises :class:`DataError` (``errors="raise"``), or
    becomes NaN with a warning (``"warn"``) or silently (``"coerce"``), so that a segment with a
    broken column still gets diagnosed.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise DataError(
            "a datetime column cannot be profiled",
            field=name,
            expected="numbers or categories",
            found=str(series.dtype),
            fix="drop the column or convert it to seconds before profiling",
        )

    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)

    parsed = pd.to_numeric(series, errors="coerce")
    unparsed = int(parsed.isna().sum() - series.isna().sum())
    if unparsed:
        example = series[parsed.isna() & series.notna()].iloc[0]
        if errors == "raise":
            raise DataError(
                f"{unparsed} values of a numeric feature are not numbers",
                field=name,
                expected="numbers",
                found=repr(example),
                fix="list the feature as categorical, or clean the column",
            )
        if errors == "warn":
            logger.warning(
                "%s: %d values are not numbers (e.g. %r); read as NaN", name, unparsed, example
            )
    return parsed.to_numpy(dtype=np.float64, na_value=np.nan)


def category_labels(values: pd.Series | pd.Index | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Categories as strings, so that a port read as ``6``, ``6.0`` or ``"6"`` is one category.

    Floats that are all whole numbers lose their ``.0``; missing values become :data:`MISSING`.
    The result is an object array of ``str``.
    """
    series = pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values
    missing = series.isna().to_numpy()

    if pd.api.types.is_float_dtype(series.dtype):
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        present = floats[~missing]
        whole = np.isfinite(present).all() and (present == np.round(present)).all()
        if whole and (np.abs(present) < 2.0**53).all():
            series = pd.Series(np.where(missing, 0.0, floats).astype(np.int64))
    labels = series.astype(str).to_numpy(dtype=object)
    labels[missing] = MISSING
    return labels


def category_counts(values: pd.Series | np.ndarray) -> pd.Series:
    """How often each category label occurs, indexed by label.

    Counting happens on the raw values and only the distinct values are turned into labels, so a
    million rows with a few hundred services cost one hash pass.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    raw = series.value_counts(dropna=False, sort=False)
    raw = raw[raw > 0]
    return raw.groupby(category_labels(raw.index), sort=False).sum().astype(np.int64)


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Fixed bins of one numeric feature and how often the reference fell into each.

    The finite bins are right-closed intervals between ``edges`` with open ends,
    ``(-inf, e0], (e0, e1], ..., (e_last, inf)``, followed by a NaN bin and an infinity bin. The
    first edge lies just below the reference minimum and the last edge is the reference maximum,
    so the two outer finite bins catch segment values outside the reference range.
    """

    name: str
    edges: np.ndarray
    counts: np.ndarray

    @property
    def n_rows(self) -> int:
        """Reference rows the counts cover."""
        return int(self.counts.sum())

    @property
    def proportions(self) -> np.ndarray:
        """Share of the reference in every bin."""
        return self.counts / max(self.n_rows, 1)

    def bin_counts(self, values: np.ndarray) -> np.ndarray:
        """Counts of ``values`` in this feature's bins (finite bins, then NaN, then infinity)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        n_nan = int(np.count_nonzero(np.isnan(values)))
        n_low = int(np.count_nonzero(values == -np.inf))
        n_high = int(np.count_nonzero(values == np.inf))
        n_finite = values.size - n_nan - n_low - n_high

        at_or_below = [np.count_nonzero(values <= edge) - n_low for edge in self.edges]
        finite_counts = np.diff([0, *at_or_below, n_finite])
        return np.concatenate([finite_counts, [n_nan, n_low + n_high]]).astype(np.int64)

    def bin_labels(self) -> list[str]:
        """Readable names of the bins, in order: ``< 0``, ``= 0``, ``(0, 12]``, ..., ``> 760``."""
        if self.edges.size == 0:
            return ["finite", "nan", "inf"]
        minimum = np.nextafter(self.edges[0], np.inf) + 0.0
        labels = [f"< {minimum:.6g}"]
        for low, high in zip(self.edges[:-1], self.edges[1:], strict=True):
            if np.nextafter(high, -np.inf) == low:
                labels.append(f"= {high:.6g}")
            elif low == self.edges[0]:
                labels.append(f"[{minimum:.6g}, {high:.6g}]")
            else:
                labels.append(f"({low:.6g}, {high:.6g}]")
        return [*labels, f"> {self.edges[-1]:.6g}", "nan", "inf"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "type": "numeric",
            "edges": [float(edge) for edge in self.edges],
            "counts": [int(count) for count in self.counts],
        }


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """The ``top_k`` categories of one categorical feature and their reference counts.

    ``counts`` has one entry per category and a last one for :data:`OTHER`, every category outside
    the top ones, including categories the reference never had.
    """

    name: str
    categories: tuple[str, ...]
    counts: np.ndarray

    @property
    def n_rows(self) -> int:
        """Reference rows the counts cover."""
        return int(self.counts.sum())

    @property
    def proportions(self) -> np.ndarray:
        """Share of the reference in every category and in the other bucket."""
        return self.counts / max(self.n_rows, 1)

    def bucket_counts(self, counts: pd.Series) -> np.ndarray:
        """Counts per category of this profile (then other) from per-label ``counts``."""
        known = counts.reindex(list(self.categories), fill_value=0).to_numpy(dtype=np.int64)
        return np.append(known, int(counts.sum()) - int(known.sum()))

    def bin_labels(self) -> list[str]:
        """Readable names of the buckets, in order."""
        return [*self.categories, OTHER]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "type": "categorical",
            "categories": list(self.categories),
            "counts": [int(count) for count in self.counts],
        }


FeatureProfile = NumericProfile | CategoricalProfile


class _RowSample:
    """A uniform sample of at most ``size`` rows, drawn chunk by chunk.

    Every row gets a uniform random key and the rows with the smallest keys are kept, so chunks can
    come in any size and the sample of a frame equals the sample of its chunks.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.keys = np.empty(0)
        self.rows: list[pd.DataFrame] = []

    def add(self, chunk: pd.DataFrame, columns: Sequence[str]) -> None:
        keys = self.rng.random(len(chunk))
        if len(chunk) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys, chunk = keys[keep], chunk.iloc[keep]

        self.keys = np.concatenate([self.keys, keys])
        self.rows.append(chunk[list(columns)].reset_index(drop=True))
        if self.keys.size > 2 * self.size:
            self._shrink()

    def _shrink(self) -> None:
        rows = pd.concat(self.rows, ignore_index=True)
        order = np.argsort(self.keys, kind="stable")[: self.size]
        self.keys, self.rows = self.keys[order], [rows.iloc[order].reset_index(drop=True)]

    def frame(self) -> pd.DataFrame:
        """The sampled rows in random order (smallest key first), as they came in."""
        if not self.rows:
            return pd.DataFrame()
        self._shrink()
        return self.rows[0]


def _bin_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Edges of about ``n_bins`` equal-mass bins over finite ``values``, aware of ties.

    Cuts go at distinct values, each one where the remaining mass splits evenly over the remaining
    bins. A value heavy enough to fill a bin by itself (the zeros of a byte count) gets a bin of
    its own, and the bins after it share what is left instead of collapsing into one.
    """
    if values.size == 0:
        return np.empty(0)
    distinct, counts = np.unique(values, return_counts=True)
    low = np.nextafter(distinct[0], -np.inf)
    if distinct.size <= n_bins:
        return np.concatenate([[low], distinct])

    mass = np.cumsum(counts) / values.size
    share = counts / values.size
    cuts: list[int] = []
    done = 0.0
    for remaining in range(n_bins, 1, -1):
        target = done + (1.0 - done) / remaining
        index = int(np.searchsorted(mass, target * (1 - 1e-12), side="left"))
        if index >= distinct.size - 1:
            break
        last = cuts[-1] if cuts else -1
        if share[index] >= (1.0 - done) / remaining and index - 1 > last:
            cuts.append(index - 1)
        cuts.append(index)
        done = mass[index]
    return np.concatenate([[low], distinct[cuts], [distinct[-1]]])


def _sample_columns(rows: pd.DataFrame, numeric: Sequence[str]) -> pd.DataFrame:
    """Sampled rows as the profile keeps them: numbers as float64, categories as labels."""
    columns: dict[str, np.ndarray] = {}
    for name in rows.columns:
        if name in numeric:
            columns[name] = numeric_values(rows[name], name=name)
        else:
            columns[name] = category_labels(rows[name])
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """The reference side of a drift diagnosis: bins, category counts and a row sample.

    Build it with :meth:`from_frame` (or :meth:`from_chunks`) at training time, store it with
    :meth:`save`, and pass it to :func:`threattune.diagnosis.detect_drift` later.
    """

    n_rows: int
    features: Mapping[str, FeatureProfile]
    sample: pd.DataFrame
    seed: int = 0
    n_bins: int = 10
    top_k: int = 50
    sample_size: int = 5_000
    predictions: ReferenceProfile | None = None

    @property
    def numeric(self) -> list[str]:
        """Names of the numeric features, in column order."""
        return [name for name, f in self.features.items() if isinstance(f, NumericProfile)]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features, in column order."""
        return [name for name, f in self.features.items() if isinstance(f, CategoricalProfile)]

    def feature(self, name: str) -> FeatureProfile:
        """The profile of one feature."""
        try:
            return self.features[name]
        except KeyError:
            raise ConfigError(
                "no such feature in the reference profile",
                field=name,
                expected=f"one of {len(self.features)} profiled features",
                found=repr(name),
            ) from None

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        categorical: Sequence[str] | None = None,
        *,
        exclude: Sequence[str] = (),
        predictions: Sequence[Any] | np.ndarray | pd.Series | None = None,
        n_bins: int = 10,
        top_k: int = 50,
        sample_size: int = 5_000,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Profile the training rows of a model.

        Parameters
        ----------
        frame:
            The reference rows, one column per feature.
        categorical:
            Features to treat as categories. ``None`` takes every non-numeric or boolean column.
            All other columns must be numeric.
        exclude:
            Columns that are no features, such as the label.
        predictions:
            The model's predictions on ``frame`` (class labels, or float scores), so that the
            predictions on a segment can be compared later. Floats are profiled as scores,
            anything else as labels.
        n_bins:
            Target number of equal-mass bins per numeric feature.
        top_k:
            Categories kept per categorical feature; the rest share one bucket.
        sample_size:
            Rows kept for the two-sample tests and the domain classifier.
        seed:
            Seed of the row sample.
        """
        profile = cls.from_chunks(
            lambda: (frame,),
            categorical=categorical,
            exclude=exclude,
            n_bins=n_bins,
            top_k=top_k,
            sample_size=sample_size,
            seed=seed,
        )
        if predictions is None:
            return profile

        return profile.with_predictions(predictions)

    def with_predictions(
        self, predictions: Sequence[Any] | np.ndarray | pd.Series
    ) -> ReferenceProfile:
        """This profile plus the model's predictions on the same reference rows."""
        if isinstance(predictions, pd.Series):
            series = predictions.reset_index(drop=True)
        else:
            series = pd.Series(np.asarray(predictions))
        if series.ndim != 1 or len(series) != self.n_rows:
            raise DataError(
                "predictions do not match the reference rows",
                field="predictions",
                expected=f"{self.n_rows} predictions, one per reference row",
                found=f"{len(series)}",
            )

        labels = not pd.api.types.is_float_dtype(series.dtype)
        predicted = ReferenceProfile.from_frame(
            pd.DataFrame({PREDICTION: series}),
            categorical=[PREDICTION] if labels else [],
            n_bins=self.n_bins,
            top_k=self.top_k,
            sample_size=self.sample_size,
            seed=self.seed,
        )
        return replace(self, predictions=predicted)

    @classmethod
    def from_chunks(
        cls,
        chunks: Callable[[], Iterable[pd.DataFrame]],
        categorical: Sequence[str] | None = None,
        *,
        exclude: Sequence[str] = (),
        n_bins: int = 10,
        top_k: int = 50,
        sample_size: int = 5_000,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Profile reference rows that arrive in chunks, such as a large CSV read piece by piece.

        ``chunks`` is called twice and must give the same rows in the same order both times, for
        example ``lambda: pd.read_csv(path, chunksize=200_000)``. With the same seed the profile
        equals that of the concatenated frame. The other parameters are those of
        :meth:`from_frame`.
        """
        _check_settings(n_bins=n_bins, top_k=top_k, sample_size=sample_size)
        first = _first_pass(chunks, categorical, exclude, max(sample_size, _EDGE_SAMPLE_MIN), seed)
        columns, numeric, rows = first.columns, first.numeric, first.rows

        edges = {name: _bin_edges(_finite(rows[name].to_numpy()), n_bins) for name in numeric}
        bin_totals = _count_bins(chunks, edges, first.n_rows)

        features: dict[str, FeatureProfile] = {}
        for name in columns:
            if name in edges:
                features[name] = NumericProfile(name, edges[name], bin_totals[name])
            else:
                features[name] = _top_categories(name, first.category_totals[name], top_k)
        logger.info(
            "profiled %d reference rows: %d numeric and %d categorical features",
            first.n_rows,
            len(numeric),
            len(columns) - len(numeric),
        )
        return cls(
            n_rows=first.n_rows,
            features=features,
            sample=rows.iloc[:sample_size].reset_index(drop=True),
            seed=seed,
            n_bins=n_bins,
            top_k=top_k,
            sample_size=sample_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON types; NaN in the sample becomes ``None``."""
        sample: dict[str, list[Any]] = {}
        for name in self.sample.columns:
            column = self.sample[name]
            if isinstance(self.features[name], NumericProfile):
                values = column.to_numpy(dtype=np.float64)
                sample[name] = [None if v != v else v for v in values.tolist()]
            else:
                sample[name] = column.astype(str).tolist()
        return {
            "format": FORMAT,
            "version": VERSION,
            "n_rows": self.n_rows,
            "seed": self.seed,
            "n_bins": self.n_bins,
            "top_k": self.top_k,
            "sample_size": self.sample_size,
            "features": [feature.to_dict() for feature in self.features.values()],
            "sample": sample,
            "predictions": None if self.predictions is None else self.predictions.to_dict(),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> ReferenceProfile:
        """Read a profile written by :meth:`to_dict`."""
        if document.get("format") != FORMAT or document.get("version") != VERSION:
            raise DataError(
                "not a reference profile this version can read",
                expected=f"format {FORMAT!r}, version {VERSION}",
                found=f"format {document.get('format')!r}, version {document.get('version')!r}",
                fix="rebuild the profile with ReferenceProfile.from_frame",
            )

        try:
            features: dict[str, FeatureProfile] = {}
            for entry in document["features"]:
                name = str(entry["name"])
                counts = np.asarray(entry["counts"], dtype=np.int64)
                if entry["type"] == "numeric":
                    edges = np.asarray(entry["edges"], dtype=np.float64)
                    features[name] = NumericProfile(name, edges, counts)
                else:
                    categories = tuple(str(c) for c in entry["categories"])
                    features[name] = CategoricalProfile(name, categories, counts)
            columns: dict[str, np.ndarray] = {}
            for name, values in document["sample"].items():
                if isinstance(features[name], NumericProfile):
                    columns[name] = np.array([np.nan if v is None else v for v in values], float)
                else:
                    columns[name] = np.asarray(values, dtype=object)
            sample = pd.DataFrame(
                columns, index=pd.RangeIndex(len(next(iter(columns.values()), [])))
            )
            predictions = document.get("predictions")
            return cls(
                n_rows=int(document["n_rows"]),
                features=features,
                sample=sample,
                seed=int(document["seed"]),
                n_bins=int(document["n_bins"]),
                top_k=int(document["top_k"]),
                sample_size=int(document["sample_size"]),
                predictions=None if predictions is None else cls.from_dict(predictions),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                "the reference profile is incomplete or malformed",
                found=f"{type(error).__name__}: {error}",
                fix="rebuild the profile with ReferenceProfile.from_frame",
            ) from error

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (gzip-compressed when the name ends in ``.gz``)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        else:
            path.write_text(text, encoding="utf-8")
        logger.info("wrote reference profile of %d features to %s", len(self.features), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            text = gzip.decompress(raw) if path.suffix == ".gz" else raw
            document = json.loads(text)
        except (OSError, ValueError) as error:
            raise DataError(
                "cannot read the reference profile",
                path=path,
                found=f"{type(error).__name__}: {error}",
                fix="point to a file written by ReferenceProfile.save",
            ) from error
        try:
            return cls.from_dict(document)
        except DataError as error:
            error.path = str(path)
            raise


@dataclass(frozen=True)
class _FirstPass:
    columns: list[str]
    numeric: list[str]
    n_rows: int
    category_totals: dict[str, pd.Series]
    rows: pd.DataFrame


def _first_pass(
    chunks: Callable[[], Iterable[pd.DataFrame]],
    categorical: Sequence[str] | None,
    exclude: Sequence[str],
    sample_size: int,
    seed: int,
) -> _FirstPass:
    """Feature kinds, row count, category counts and the row sample, in one pass over chunks."""
    sample = _RowSample(sample_size, np.random.default_rng(seed))
    category_totals: dict[str, pd.Series] = {}
    columns: list[str] | None = None
    numeric: list[str] = []
    n_rows = 0
    for chunk in chunks():
        if columns is None:
            columns = _feature_columns(chunk, exclude)
            numeric, _ = _feature_kinds(chunk.dtypes[columns], categorical)
        _check_columns(chunk, columns)
        sample.add(chunk, columns)
        for name in columns:
            if name not in numeric:
                counts = category_counts(chunk[name])
                total = category_totals.get(name)
                category_totals[name] = counts if total is None else total.add(counts, fill_value=0)
        n_rows += len(chunk)
    if columns is None or n_rows == 0:
        raise DataError("no reference rows to profile", expected="at least one row", found="none")

    rows = _sample_columns(sample.frame(), numeric)
    return _FirstPass(columns, numeric, n_rows, category_totals, rows)


def _count_bins(
    chunks: Callable[[], Iterable[pd.DataFrame]], edges: Mapping[str, np.ndarray], n_rows: int
) -> dict[str, np.ndarray]:
    """Reference counts per bin of every numeric feature, in a second pass over chunks."""
    if not edges:
        return {}
    binned = {
        name: NumericProfile(name, e, np.zeros(e.size + 3, np.int64)) for name, e in edges.items()
    }
    totals = {name: np.zeros(e.size + 3, dtype=np.int64) for name, e in edges.items()}
    n_second = 0
    for chunk in chunks():
        _check_columns(chunk, list(edges))
        for name, feature in binned.items():
            totals[name] += feature.bin_counts(numeric_values(chunk[name], name=name))
        n_second += len(chunk)
    if n_second != n_rows:
        raise DataError(
            "the chunks gave different rows on the second pass",
            expected=f"{n_rows} rows",
            found=f"{n_second} rows",
            fix="pass a function that reads the source again from the start",
        )
    return totals


def _check_settings(*, n_bins: int, top_k: int, sample_size: int) -> None:
    if not 2 <= n_bins <= 100:
        raise ConfigError(
            "n_bins out of range", field="n_bins", expected="2 to 100", found=str(n_bins)
        )
    if not 1 <= top_k <= _MAX_TOP_K:
        raise ConfigError(
            "top_k out of range", field="top_k", expected=f"1 to {_MAX_TOP_K}", found=str(top_k)
        )
    if sample_size < 100:
        raise ConfigError(
            "sample too small for the two-sample tests",
            field="sample_size",
            expected="at least 100",
            found=str(sample_size),
        )


def _feature_kinds(
    dtypes: pd.Series, categorical: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Split columns, given by their dtypes, into numeric and categorical features."""
    types = pd.api.types
    if categorical is None:
        chosen = {
            name
            for name, dtype in dtypes.items()
            if types.is_bool_dtype(dtype)
            or not (types.is_numeric_dtype(dtype) or types.is_datetime64_any_dtype(dtype))
        }
    else:
        unknown = [name for name in categorical if name not in dtypes.index]
        if unknown:
            raise ConfigError(
                "categorical features missing from the reference rows",
                field="categorical",
                expected="column names of the frame",
                found=", ".join(map(repr, unknown)),
            )
        chosen = set(categorical)
    numeric = [name for name in dtypes.index if name not in chosen]
    return numeric, [name for name in dtypes.index if name in chosen]


def _feature_columns(chunk: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """The columns of the first chunk that are features."""
    unknown = [name for name in exclude if name not in chunk.columns]
    if unknown:
        raise ConfigError(
            "excluded columns missing from the reference rows",
            field="exclude",
            expected="column names of the frame",
            found=", ".join(map(repr, unknown)),
        )
    columns = [name for name in chunk.columns if name not in set(exclude)]
    duplicated = sorted({str(name) for name in columns if columns.count(name) > 1})
    if duplicated:
        raise DataError(
            "duplicate column names", expected="unique feature names", found=", ".join(duplicated)
        )
    return columns


def _check_columns(chunk: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [name for name in columns if name not in chunk.columns]
    if missing:
        raise DataError(
            "a chunk lacks columns of the first chunk",
            expected="the same columns in every chunk",
            found="missing " + ", ".join(map(repr, missing[:5])),
        )


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _top_categories(name: str, counts: pd.Series, top_k: int) -> CategoricalProfile:
    """The ``top_k`` most frequent categories (ties by label, for a stable order) and the rest."""
    table = pd.DataFrame({"label": counts.index.astype(str), "count": counts.to_numpy(np.int64)})
    table = table.sort_values(["count", "label"], ascending=[False, True], kind="stable")
    top = table.iloc[:top_k]
    other = int(table["count"].iloc[top_k:].sum())
    return CategoricalProfile(
        name, tuple(top["label"]), np.append(top["count"].to_numpy(np.int64), other)
    )
