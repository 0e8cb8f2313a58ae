"""The ATT&CK table, the built-in class mappings and the errors a user's own mapping gets."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from threattune.attack import AttackMapping, AttackTable, load_table
from threattune.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CICIDS2017_LABELS = {
    "BENIGN",
    "Botnet",
    "DDoS",
    "DoS GoldenEye",
    "DoS Hulk",
    "DoS Slowhttptest",
    "DoS Slowloris",
    "FTP-Patator",
    "Heartbleed",
    "Infiltration",
    "Infiltration - Portscan",
    "Portscan",
    "SSH-Patator",
    "Web Attack - Brute Force",
    "Web Attack - SQL Injection",
    "Web Attack - XSS",
}


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_attack_table", REPO / "scripts" / "build_attack_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_table_has_the_v18_1_tactics_and_techniques() -> None:
    table = load_table()

    assert table.version == "18.1"
    assert len(table.tactics) == 14
    assert len(table) == 691
    assert sum(t.is_subtechnique for t in table) == 475
    assert table.tactics[0].shortname == "reconnaissance"
    assert table.tactics[-1].shortname == "impact"
    assert table.tactic("TA0007") is table.tactic("discovery")


def test_t1046_is_network_service_discovery() -> None:
    technique = load_table().technique("T1046")

    assert technique.name == "Network Service Discovery"
    assert technique.tactics == ("discovery",)
    assert technique.url == "https://attack.mitre.org/techniques/T1046"
    assert not technique.is_subtechnique and technique.parent_id is None


def test_subtechnique_knows_its_parent() -> None:
    technique = load_table().technique("t1110.001")

    assert technique.name == "Password Guessing"
    assert technique.is_subtechnique and technique.parent_id == "T1110"


def test_unknown_technique_suggests_a_close_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean T1110, Brute Force"):
        load_table().technique("T1110.099")


def test_revoked_technique_names_its_replacement() -> None:
    with pytest.raises(ConfigError, match=r"revoked in ATT&CK; replaced by T1059.001"):
        load_table().technique("T1086")


def test_table_matches_the_stix_release(data_root: Path) -> None:
    script = _build_script()
    stix_zip = data_root / "mitre-attack-enterprise" / script.STIX_ZIP
    packaged = json.loads(
        resources.files("threattune").joinpath("data/attack_techniques.json").read_text("utf-8")
    )

    rebuilt = script.build_table(script.read_stix_objects(stix_zip), "18.1", packaged["source"])

    assert rebuilt == packaged
    assert AttackTable.from_dict(rebuilt).technique("T1046") == load_table().technique("T1046")


def test_notice_reproduces_mitre_licence(data_root: Path) -> None:
    notice = resources.files("threattune").joinpath("data/MITRE_NOTICE.txt").read_text("utf-8")
    licence = (data_root / "mitre-attack-enterprise" / "LICENSE.txt").read_text("utf-8")

    assert licence in notice
    assert notice.count("© 2025 The MITRE Corporation.") >= 2


@pytest.mark.parametrize("name", ["nsl-kdd", "cicids2017", "phishing"])
def test_builtin_mapping_validates_against_the_table(name: str) -> None:
    mapping = AttackMapping.builtin(name)
    table = load_table()

    assert name in AttackMapping.builtin_names()
    for class_name in mapping.classes:
        for technique in mapping.techniques_for(class_name):
            assert table.technique(technique.id) == technique
        entry = mapping.entry(class_name)
        assert entry.benign or entry.techniques or class_name == "spam", class_name
        assert entry.note, class_name


def test_nsl_kdd_mapping_has_the_five_categories(data_root: Path) -> None:
    mapping = AttackMapping.builtin("nsl-kdd")
    attack_types = (data_root / "nsl-kdd" / "training_attack_types.txt").read_text()
    categories = {line.split()[1] for line in attack_types.splitlines() if line.strip()}

    assert mapping.classes == ["normal", "DoS", "Probe", "R2L", "U2R"]
    assert {c.lower() for c in mapping.classes} == categories | {"normal"}
    assert mapping.technique_label("DoS") == "T1498;T1499"
    assert "T1046" in mapping.technique_label("Probe")
    assert mapping.techniques_for("normal") == []


def test_cicids2017_mapping_has_the_dataset_labels(data_root: Path) -> None:
    mapping = AttackMapping.builtin("cicids2017")
    folder = data_root / "cicids2017-improved-sample"
    labels = set()
    for csv in folder.glob("*.csv"):
        labels |= set(pd.read_csv(csv, usecols=["Label"], nrows=50)["Label"])

    assert labels == CICIDS2017_LABELS
    assert set(mapping.classes) == CICIDS2017_LABELS
    assert mapping.technique_label("SSH-Patator") == "T1110.001"
    assert [t.shortname for t in mapping.tactics_for("Portscan")] == ["discovery"]


def test_builtin_accepts_a_dataset_alias_and_rejects_unknown_names() -> None:
    assert AttackMapping.builtin("cicids2017-improved-sample").name == "cicids2017"

    with pytest.raises(ConfigError, match=r"did you mean 'phishing'"):
        AttackMapping.builtin("phishin")


def test_user_yaml_with_bad_id_names_file_line_and_class(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: my-soc\n"
        "classes:\n"
        "  benign: {benign: true}\n"
        "  scan:\n"
        "    techniques:\n"
        "      - T1046\n"
        "      - T1999\n",
    )

    with pytest.raises(ConfigError) as caught:
        AttackMapping.from_yaml(path)

    error = caught.value
    assert error.path == str(path) and error.line == 7
    assert error.field == "classes.scan.techniques"
    assert "class 'scan'" in str(error) and "'T1999'" in str(error)
    assert str(path) in str(error)


def test_user_yaml_shorthand_and_revoked_id(tmp_path: Path) -> None:
    good = AttackMapping.from_yaml(_write(tmp_path, "classes:\n  ok: []\n  scan: [T1046]\n"))
    assert good.classes == ["ok", "scan"] and good.name == "my_mapping"

    path = _write(tmp_path, "classes:\n  ok: []\n  psh: [T1086]\n")
    with pytest.raises(ConfigError, match=r"use T1059.001 instead") as caught:
        AttackMapping.from_yaml(path)
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("classes:\n  a: {techniques: [T1046], bening: true}\n", 2, "unknown key(s) bening"),
        ("classes:\n  a: {benign: true, techniques: [T1046]}\n", 2, "marked benign"),
        ("classes:\n  a: T1046\n", 2, "must list its techniques"),
        ("name: x\nclasses: [a, b]\n", 2, "non-empty 'classes' mapping"),
        ("classes:\n  a: [T1046\n", 3, "not valid YAML"),
    ],
)
def test_user_yaml_mistakes_are_located(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        AttackMapping.from_yaml(_write(tmp_path, text))

    assert caught.value.line == line
    assert fragment in str(caught.value)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the ATT&CK mapping file"):
        AttackMapping.from_yaml(tmp_path / "absent.yaml")


def test_unknown_class_suggests_a_close_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'DoS Hulk'"):
        AttackMapping.builtin("cicids2017").techniques_for("DoS hulk")


def test_to_dict_is_json_ready_and_reads_back() -> None:
    mapping = AttackMapping.builtin("cicids2017")

    stored = json.loads(json.dumps(mapping.to_dict()))
    restored = AttackMapping.from_dict(stored)

    assert stored["attack_version"] == "18.1" and stored["source"] == "builtin:cicids2017"
    assert stored["classes"]["Heartbleed"]["techniques"] == ["T1190", "T1212"]
    assert stored["techniques"]["T1046"]["name"] == "Network Service Discovery"
    assert restored.to_dict()["classes"] == stored["classes"]
    assert restored.classes == mapping.classes


def test_techniques_by_class_for_a_model_bundle() -> None:
    by_class = AttackMapping.builtin("nsl-kdd").techniques_by_class()

    assert list(by_class) == ["normal", "DoS", "Probe", "R2L", "U2R"]
    assert by_class["normal"] == []
    assert by_class["DoS"][0] == {
        "id": "T1498",
        "name": "Network Denial of Service",
        "tactics": ["impact"],
    }


def test_coverage_lists_tactics_and_classes_without_technique() -> None:
    coverage = AttackMapping.builtin("phishing").coverage()

    report = coverage.to_dict()
    markdown = coverage.to_markdown()

    assert report["benign_classes"] == ["legitimate"]
    assert report["unmapped_classes"] == ["spam"]
    assert "impact" in report["uncovered_tactics"]
    initial_access = next(t for t in report["tactics"] if t["shortname"] == "initial-access")
    assert initial_access["techniques"] == ["T1566", "T1566.001", "T1566.002"]
    assert initial_access["classes"] == ["phishing"]
    for tactic in load_table().tactics:
        assert f"| {tactic.name} | {tactic.id} |" in markdown
    assert "Classes with no technique: spam." in markdown


def test_nsl_kdd_coverage_spans_discovery_and_impact() -> None:
    coverage = AttackMapping.builtin("nsl-kdd").coverage()

    covered = {entry.tactic.shortname for entry in coverage.tactics if entry.covered}

    assert {"discovery", "impact", "credential-access", "privilege-escalation"} <= covered
    assert coverage.unmapped_classes == ()
