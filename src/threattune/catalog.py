"""The catalogue of public datasets: where each one lives, where it comes from, and its checksums.

threattune never ships dataset files. Each dataset is a folder under the directory named by the
``THREATTUNE_DATA`` environment variable, and ``data/catalog.yaml`` records the publisher, the
terms of use and the SHA-256 of every file, so that a model is only ever trained on the bytes its
report claims.

>>> ds = get_dataset("nsl-kdd")
>>> ds.title
'NSL-KDD'
>>> get_dataset("cicids2017").name
'cicids2017-improved-sample'
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from threattune.errors import ConfigError, DatasetError

__all__ = [
    "DATA_ENV",
    "Dataset",
    "DatasetFile",
    "DatasetStatus",
    "FileState",
    "FileStatus",
    "data_root",
    "dataset_dir",
    "dataset_path",
    "dataset_status",
    "get_dataset",
    "load_catalog",
    "sha256_file",
    "verify",
]

logger = logging.getLogger(__name__)

DATA_ENV = "THREATTUNE_DATA"
"""Environment variable naming the folder that holds one sub-folder per dataset."""

FileState = Literal["present", "missing", "checksum-mismatch"]
"""What :func:`dataset_status` found for one file."""

_CATALOG_RESOURCE = "data/catalog.yaml"
_CHUNK_BYTES = 1 << 20
_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_SET_ROOT_FIX = f"export {DATA_ENV}=../shared/data (the folder with one sub-folder per dataset)"


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset: its path relative to the dataset folder and its SHA-256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """A catalogued dataset: a folder under ``THREATTUNE_DATA`` and what is known about it.

    ``publisher`` is the address to get the data from and ``source`` the repository the
    catalogued copy was taken from; ``licence`` summarises the terms of use.
    """

    name: str
    title: str
    description: str
    publisher: str
    source: str
    licence: str
    files: tuple[DatasetFile, ...]
    aliases: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        """The dataset's folder name under ``THREATTUNE_DATA``."""
        return self.name

    def file(self, relative_file: str) -> DatasetFile:
        """The catalogued file at ``relative_file``; ConfigError naming close matches if none."""
        wanted = _normalise_file(relative_file)
        for dataset_file in self.files:
            if dataset_file.path == wanted:
                return dataset_file

        known = [dataset_file.path for dataset_file in self.files]
        raise ConfigError(
            f"dataset '{self.name}' has no file '{relative_file}'",
            field="relative_file",
            expected=f"one of the {len(known)} catalogued files, such as {known[0]}",
            found=relative_file + _did_you_mean(wanted, known),
            fix="use a path relative to the dataset folder, as listed in its SHA256SUMS",
        )


@dataclass(frozen=True)
class FileStatus:
    """What was found for one catalogued file.

    ``found_sha256`` is None when the file is missing.
    """

    path: Path
    relative_path: str
    state: FileState
    expected_sha256: str
    found_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "path": str(self.path),
            "relative_path": self.relative_path,
            "state": self.state,
            "expected_sha256": self.expected_sha256,
            "found_sha256": self.found_sha256,
        }


@dataclass(frozen=True)
class DatasetStatus:
    """The state of a dataset on disk: one :class:`FileStatus` per catalogued file.

    ``status`` sums them up: ``present`` when every file is there with the right checksum,
    ``checksum-mismatch`` when any file differs, ``missing`` when no file is there and
    ``incomplete`` when only some are.
    """

    dataset: Dataset
    folder: Path
    files: tuple[FileStatus, ...]

    @property
    def status(self) -> Literal["present", "missing", "incomplete", "checksum-mismatch"]:
        """The overall state of the dataset."""
        states = [file_status.state for file_status in self.files]
        if "checksum-mismatch" in states:
            return "checksum-mismatch"
        if states and all(state == "missing" for state in states):
            return "missing"
        if "missing" in states:
            return "incomplete"
        return "present"

    @property
    def ok(self) -> bool:
        """True when every catalogued file is present with the catalogued checksum."""
        return self.status == "present"

    def problems(self) -> list[FileStatus]:
        """The files that are missing or fail their checksum."""
        return [file_status for file_status in self.files if file_status.state != "present"]

    def summary(self) -> str:
        """One line for a log or a terminal, e.g. ``nsl-kdd: present (5/5 files verified)``."""
        verified = sum(file_status.state == "present" for file_status in self.files)
        return f"{self.dataset.name}: {self.status} ({verified}/{len(self.files)} files verified)"

    def raise_for_status(self) -> None:
        """Raise :class:`DatasetError` naming the first bad file unless the dataset is ok."""
        if self.ok:
            return

        bad = self.problems()
        first = bad[0]
        others = f" and {len(bad) - 1} more file(s)" if len(bad) > 1 else ""
        fix = f"get the data from {self.dataset.publisher} into {self.folder}"
        if first.state == "missing":
            raise DatasetError(
                f"dataset '{self.dataset.name}' is {self.status}: file missing{others}",
                path=first.path,
                expected="the file, as listed in the dataset's SHA256SUMS",
                found="no such file",
                fix=fix,
            )
        raise DatasetError(
            f"dataset '{self.dataset.name}' fails its checksum{others}",
            path=first.path,
            field="sha256",
            expected=first.expected_sha256,
            found=first.found_sha256,
            fix=f"the file was changed or truncated; {fix} again",
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "dataset": self.dataset.name,
            "folder": str(self.folder),
            "status": self.status,
            "files": [file_status.to_dict() for file_status in self.files],
        }


def data_root() -> Path:
    """The folder named by ``THREATTUNE_DATA``, which holds one sub-folder per dataset.

    Raises :class:`DatasetError` when the variable is unset or does not name a folder.
    """
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        raise DatasetError(
            f"{DATA_ENV} is not set, so threattune cannot find the datasets",
            field=DATA_ENV,
            expected="the path of the folder that holds the public datasets",
            found="unset",
            fix=_SET_ROOT_FIX,
        )

    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(
            f"{DATA_ENV} does not name a folder",
            path=root,
            field=DATA_ENV,
            expected="an existing folder with one sub-folder per dataset",
            found=f"{value!r}, which is {'a file' if root.exists() else 'not there'}",
            fix=_SET_ROOT_FIX,
        )
    return root


@cache
def load_catalog() -> dict[str, Dataset]:
    """Every catalogued dataset, by name, read once from the packaged ``catalog.yaml``."""
    text = resources.files("threattune").joinpath(_CATALOG_RESOURCE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)

    catalog: dict[str, Dataset] = {}
    for index, entry in enumerate(document["datasets"]):
        dataset = _parse_dataset(entry, index)
        catalog[dataset.name] = dataset
    logger.debug("loaded %d datasets from %s", len(catalog), _CATALOG_RESOURCE)
    return catalog


def get_dataset(name: str) -> Dataset:
    """The dataset called ``name`` or one of its aliases; case, ``-`` and ``_`` do not matter.

    Raises :class:`ConfigError` listing the known names, with the closest one first.
    """
    catalog = load_catalog()
    names = _names_index(catalog)
    key = _normalise_name(name)
    if key in names:
        return catalog[names[key]]

    suggestion = difflib.get_close_matches(key, list(names), n=1, cutoff=0.5)
    hint = f" (did you mean '{names[suggestion[0]]}'?)" if suggestion else ""
    raise ConfigError(
        f"unknown dataset '{name}'{hint}",
        field="dataset",
        expected="one of: " + ", ".join(sorted(catalog)),
        found=name,
        fix="use a catalogued name or alias; each dataset's aliases are in catalog.yaml",
    )


def sha256_file(path: Path) -> str:
    """The SHA-256 of ``path`` as hex, read in 1 MiB chunks and cached by size and mtime.

    A repeated call for an unchanged file costs one ``stat``.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASH_CACHE:
        return _HASH_CACHE[key]

    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def dataset_status(dataset: Dataset, root: Path | None = None) -> DatasetStatus:
    """Check every file of ``dataset`` under ``root`` (by default :func:`data_root`)."""
    folder = (root if root is not None else data_root()) / dataset.folder

    statuses = []
    for dataset_file in dataset.files:
        path = folder / dataset_file.path
        if not path.is_file():
            statuses.append(FileStatus(path, dataset_file.path, "missing", dataset_file.sha256))
            continue
        found = sha256_file(path)
        state: FileState = "present" if found == dataset_file.sha256 else "checksum-mismatch"
        statuses.append(FileStatus(path, dataset_file.path, state, dataset_file.sha256, found))

    status = DatasetStatus(dataset, folder, tuple(statuses))
    log = logger.info if status.ok else logger.warning
    log("dataset %s", status.summary())
    return status


def verify(name: str) -> DatasetStatus:
    """Check the files of the dataset called ``name`` under :func:`data_root`."""
    return dataset_status(get_dataset(name))


def dataset_dir(name: str) -> Path:
    """The folder of the dataset called ``name``; DatasetError saying where to get it if absent."""
    dataset = get_dataset(name)
    folder = data_root() / dataset.folder
    if not folder.is_dir():
        raise DatasetError(
            f"dataset '{dataset.name}' is not there",
            path=folder,
            expected=f"a folder holding {dataset.title}",
            found="no such folder",
            fix=f"get the data from {dataset.publisher} into {folder}",
        )
    return folder


def dataset_path(name: str, relative_file: str) -> Path:
    """The path of a catalogued file of the dataset called ``name``, checked to exist.

    ``relative_file`` may also be a folder inside the dataset, such as ``atomic/_metadata``.
    Checksums are not computed here; call :func:`verify` for that.
    """
    dataset = get_dataset(name)
    wanted = _normalise_file(relative_file)
    is_folder = any(
        PurePosixPath(wanted) in PurePosixPath(dataset_file.path).parents
        for dataset_file in dataset.files
    )
    if not is_folder:
        dataset.file(wanted)

    path = data_root() / dataset.folder / wanted
    exists = path.is_dir() if is_folder else path.is_file()
    if not exists:
        raise DatasetError(
            f"file of dataset '{dataset.name}' not found",
            path=path,
            expected=f"{'the folder' if is_folder else 'the file'} {wanted} of {dataset.title}",
            found="nothing at that path",
            fix=(
                f"get the data from {dataset.publisher} into {path.parent}, "
                f"or set {DATA_ENV} to the folder that holds '{dataset.folder}'"
            ),
        )
    return path


def _parse_dataset(entry: dict[str, Any], index: int) -> Dataset:
    required = ("name", "title", "description", "publisher", "source", "licence", "files")
    missing = [key for key in required if key not in entry]
    if missing:
        raise ConfigError(
            f"catalogue entry {index} lacks {', '.join(missing)}",
            path=_CATALOG_RESOURCE,
            field=f"datasets[{index}]",
            expected=", ".join(required),
            found=", ".join(entry),
            fix="complete the entry in catalog.yaml",
        )

    files = tuple(DatasetFile(str(item["path"]), str(item["sha256"])) for item in entry["files"])
    return Dataset(
        name=str(entry["name"]),
        title=str(entry["title"]),
        description=str(entry["description"]),
        publisher=str(entry["publisher"]),
        source=str(entry["source"]),
        licence=str(entry["licence"]),
        files=files,
        aliases=tuple(str(alias) for alias in entry.get("aliases", ())),
    )


def _names_index(catalog: dict[str, Dataset]) -> dict[str, str]:
    names: dict[str, str] = {}
    for dataset in catalog.values():
        for alias in (dataset.name, *dataset.aliases):
            names[_normalise_name(alias)] = dataset.name
    return names


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _normalise_file(relative_file: str) -> str:
    return PurePosixPath(str(relative_file).replace("\\", "/").removeprefix("./")).as_posix()


def _did_you_mean(wanted: str, known: list[str]) -> str:
    close = difflib.get_close_matches(wanted, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
