"""The dataset catalogue: names, checksums on the real data, and the errors users see."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from threattune import catalog
from threattune.catalog import (
    Dataset,
    DatasetFile,
    dataset_path,
    dataset_status,
    get_dataset,
    load_catalog,
    sha256_file,
    verify,
)
from threattune.errors import ConfigError, DatasetError


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_catalog_names_every_dataset_folder(data_root: Path) -> None:
    folders = {path.name for path in data_root.iterdir() if path.is_dir()}

    assert set(load_catalog()) == folders
    assert len(folders) == 13


def test_catalog_lists_every_file_of_each_sha256sums(data_root: Path) -> None:
    for dataset in load_catalog().values():
        lines = (data_root / dataset.folder / "SHA256SUMS").read_text().splitlines()
        listed = {
            (path.removeprefix("./"), sha256)
            for sha256, path in (line.split(maxsplit=1) for line in lines if line.strip())
        }

        assert {(f.path, f.sha256) for f in dataset.files} == listed, dataset.name


def test_every_dataset_has_its_publisher_and_terms() -> None:
    for dataset in load_catalog().values():
        assert dataset.publisher.startswith(("http://", "https://")), dataset.name
        assert dataset.title and dataset.description and dataset.licence, dataset.name


def test_all_datasets_present_and_verified(data_root: Path) -> None:
    statuses = {name: verify(name) for name in load_catalog()}

    assert {name: status.status for name, status in statuses.items()} == dict.fromkeys(
        statuses, "present"
    )
    for status in statuses.values():
        status.raise_for_status()
        assert status.folder == data_root / status.dataset.folder


def test_aliases_resolve_to_the_dataset() -> None:
    assert get_dataset("cicids2017").name == "cicids2017-improved-sample"
    assert get_dataset("NSL_KDD").name == "nsl-kdd"
    assert get_dataset("otrf").name == "otrf-security-datasets"


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        get_dataset("nsl-kd")

    message = str(caught.value)
    assert "unknown dataset 'nsl-kd'" in message
    assert "did you mean 'nsl-kdd'?" in message
    assert "cicids2017-improved-sample" in message and "tranco_top100k" in message


def test_fake_tree_reports_mismatch_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "good.csv").write_bytes(b"a,b\n1,2\n")
    (folder / "changed.csv").write_bytes(b"a,b\n1,3\n")
    toy = Dataset(
        name="toy",
        title="Toy",
        description="A tiny fake dataset.",
        publisher="https://example.org/toy",
        source="https://example.org/toy.git",
        licence="CC0",
        files=(
            DatasetFile("good.csv", _sha256(b"a,b\n1,2\n")),
            DatasetFile("changed.csv", _sha256(b"a,b\n1,2\n")),
            DatasetFile("sub/absent.csv", _sha256(b"")),
        ),
    )

    status = dataset_status(toy, root=tmp_path)

    assert [f.state for f in status.files] == ["present", "checksum-mismatch", "missing"]
    assert status.status == "checksum-mismatch" and not status.ok
    assert status.files[1].found_sha256 == _sha256(b"a,b\n1,3\n")
    assert [f.relative_path for f in status.problems()] == ["changed.csv", "sub/absent.csv"]
    with pytest.raises(DatasetError) as caught:
        status.raise_for_status()
    assert str(folder / "changed.csv") in str(caught.value)
    assert toy.files[1].sha256 in str(caught.value)

    (folder / "changed.csv").write_bytes(b"a,b\n1,2\n")
    assert dataset_status(toy, root=tmp_path).status == "incomplete"
    assert dataset_status(toy, root=tmp_path / "elsewhere").status == "missing"


def test_catalogued_dataset_in_a_fake_root(tmp_path: Path) -> None:
    (tmp_path / "tranco_top100k").mkdir()
    (tmp_path / "tranco_top100k" / "tranco_top_100k.csv.xz").write_bytes(b"not the list")

    tranco = dataset_status(get_dataset("tranco"), root=tmp_path)
    nsl_kdd = dataset_status(get_dataset("nsl-kdd"), root=tmp_path)

    assert tranco.status == "checksum-mismatch"
    assert nsl_kdd.status == "missing"
    assert {f.state for f in nsl_kdd.files} == {"missing"}
    assert nsl_kdd.to_dict()["status"] == "missing"


def test_hashes_are_cached_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_sha256 = hashlib.sha256
    expected = _sha256(b"x" * (3 << 20)), _sha256(b"y" * 10)

    def counting_sha256(*args: bytes) -> Any:
        calls.append(1)
        return real_sha256(*args)

    monkeypatch.setattr(catalog.hashlib, "sha256", counting_sha256)
    path = tmp_path / "flows.csv"
    path.write_bytes(b"x" * (3 << 20))

    first = sha256_file(path)
    second = sha256_file(path)
    assert first == second == expected[0]
    assert len(calls) == 1

    path.write_bytes(b"y" * 10)
    assert sha256_file(path) == expected[1]
    assert len(calls) == 2


def test_data_root_unset_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THREATTUNE_DATA", raising=False)

    with pytest.raises(DatasetError) as caught:
        catalog.data_root()

    assert "THREATTUNE_DATA is not set" in str(caught.value)
    assert "export THREATTUNE_DATA=" in str(caught.value)


def test_data_root_that_is_not_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREATTUNE_DATA", str(tmp_path / "nowhere"))

    with pytest.raises(DatasetError, match="does not name a folder"):
        catalog.data_root()


def test_dataset_path_finds_catalogued_files_and_folders(data_root: Path) -> None:
    assert dataset_path("nsl-kdd", "KDDTrain+.txt") == data_root / "nsl-kdd" / "KDDTrain+.txt"
    assert dataset_path("otrf", "atomic/_metadata").is_dir()


def test_dataset_path_missing_names_path_and_publisher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREATTUNE_DATA", str(tmp_path))

    with pytest.raises(DatasetError) as caught:
        dataset_path("nsl-kdd", "KDDTest+.txt")

    message = str(caught.value)
    assert str(tmp_path / "nsl-kdd" / "KDDTest+.txt") in message
    assert "https://www.unb.ca/cic/datasets/nsl.html" in message


def test_dataset_path_unknown_file_suggests_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'KDDTrain\+.txt'"):
        dataset_path("nsl-kdd", "KDDTrain.txt")
