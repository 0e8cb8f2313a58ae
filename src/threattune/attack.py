"""MITRE ATT&CK techniques, and the editable mapping from a classifier's classes to them.

A SOC reads alerts in ATT&CK terms, so every class a threattune model predicts can carry the
techniques it stands for. The technique table is ATT&CK Enterprise v18.1, built from MITRE's STIX
data by ``scripts/build_attack_table.py`` (see ``data/MITRE_NOTICE.txt``). Mappings are small YAML
files: built-in ones for NSL-KDD, CICIDS2017 and phishing e-mail, or a user's own.

>>> table = load_table()
>>> table.technique("T1046").name
'Network Service Discovery'
>>> mapping = AttackMapping.builtin("nsl-kdd")
>>> mapping.technique_label("DoS")
'T1498;T1499'
>>> [tactic.shortname for tactic in mapping.tactics_for("DoS")]
['impact']

ATT&CK® is a registered trademark of The MITRE Corporation.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from threattune.catalog import get_dataset
from threattune.errors import ConfigError

__all__ = [
    "AttackMapping",
    "AttackTable",
    "ClassTechniques",
    "MappingCoverage",
    "Tactic",
    "TacticCoverage",
    "Technique",
    "load_table",
]

logger = logging.getLogger(__name__)

_TABLE_RESOURCE = "data/attack_techniques.json"
_MAPPING_FOLDER = "data/attack_mapping"
_TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
_CLASS_KEYS = {"techniques", "benign", "note", "tactics"}
_TOP_KEYS = {
    "name",
    "dataset",
    "description",
    "attack_version",
    "classes",
    "source",
    "techniques",
}
_LOOKUP_URL = "https://attack.mitre.org/techniques/enterprise/"


@dataclass(frozen=True)
class Tactic:
    """An ATT&CK tactic: the adversary's goal, such as ``discovery`` (TA0007)."""

    id: str
    shortname: str
    name: str

    @property
    def url(self) -> str:
        """The tactic's page on attack.mitre.org."""
        return f"https://attack.mitre.org/tactics/{self.id}"


@dataclass(frozen=True)
class Technique:
    """An ATT&CK technique or sub-technique; ``tactics`` holds tactic shortnames."""

    id: str
    name: str
    tactics: tuple[str, ...]
    url: str
    is_subtechnique: bool

    @property
    def parent_id(self) -> str | None:
        """The parent technique's ID for a sub-technique (T1110 for T1110.001), else None."""
        return self.id.split(".")[0] if self.is_subtechnique else None


class AttackTable:
    """The tactics and live techniques of one ATT&CK Enterprise release.

    Revoked and deprecated IDs are not techniques of the table, but the table remembers them
    so that an error can say what replaced them.
    """

    def __init__(
        self,
        version: str,
        tactics: list[Tactic],
        techniques: list[Technique],
        retired: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.version = version
        self.tactics: tuple[Tactic, ...] = tuple(tactics)
        self._techniques = {technique.id: technique for technique in techniques}
        self._tactics = {tactic.shortname: tactic for tactic in tactics}
        self._tactics.update({tactic.id: tactic for tactic in tactics})
        self._retired = dict(retired or {})

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> AttackTable:
        """Build a table from the JSON layout of ``attack_techniques.json``."""
        tactics = [Tactic(row["id"], row["shortname"], row["name"]) for row in document["tactics"]]
        techniques = [
            Technique(
                id=row["id"],
                name=row["name"],
                tactics=tuple(row["tactics"]),
                url=row["url"],
                is_subtechnique=bool(row["is_subtechnique"]),
            )
            for row in document["techniques"]
        ]
        return cls(str(document["version"]), tactics, techniques, document.get("retired"))

    @property
    def techniques(self) -> tuple[Technique, ...]:
        """Every live technique and sub-technique, ordered by ID."""
        return tuple(self._techniques.values())

    def __len__(self) -> int:
        return len(self._techniques)

    def __iter__(self) -> Iterator[Technique]:
        return iter(self._techniques.values())

    def __contains__(self, technique_id: object) -> bool:
        return isinstance(technique_id, str) and _canonical(technique_id) in self._techniques

    def technique(self, technique_id: str) -> Technique:
        """The technique with ``technique_id`` (case-insensitive).

        Raises :class:`ConfigError` for an unknown ID, with a suggestion or, for a revoked or
        deprecated ID, what replaced it.
        """
        canonical = _canonical(technique_id)
        if canonical in self._techniques:
            return self._techniques[canonical]

        found, fix = self.explain_unknown(technique_id)
        raise ConfigError(
            f"unknown ATT&CK technique '{technique_id}'",
            field="technique",
            expected=_expected_id(self.version),
            found=found,
            fix=fix,
        )

    def tactic(self, key: str) -> Tactic:
        """The tactic with ID (TA0007) or shortname (discovery); ConfigError if unknown."""
        if key in self._tactics:
            return self._tactics[key]

        names = [tactic.shortname for tactic in self.tactics]
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        raise ConfigError(
            f"unknown ATT&CK tactic '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
            field="tactic",
            expected="one of: " + ", ".join(names),
            found=key,
        )

    def explain_unknown(self, technique_id: str) -> tuple[str, str]:
        """What to tell a user about an ID that is not a live technique: found text and fix."""
        canonical = _canonical(technique_id)
        if canonical in self._retired:
            retired = self._retired[canonical]
            replacement = self._replacement(canonical)
            found = f"{canonical} ({retired['name']}), {retired['reason']} in ATT&CK"
            if replacement is None:
                return found, "remove it, or pick a current technique at " + _LOOKUP_URL
            return (
                f"{found}; replaced by {replacement.id} ({replacement.name})",
                f"use {replacement.id} instead",
            )

        fix = "correct the ID; look techniques up at " + _LOOKUP_URL
        suggestion = self._suggest(technique_id)
        if suggestion is None:
            return technique_id, fix
        return f"{technique_id} (did you mean {suggestion.id}, {suggestion.name}?)", fix

    def _replacement(self, technique_id: str) -> Technique | None:
        seen = {technique_id}
        current = self._retired[technique_id].get("replaced_by")
        while current is not None and current not in self._techniques and current not in seen:
            seen.add(current)
            current = self._retired.get(current, {}).get("replaced_by")
        return self._techniques.get(current) if current is not None else None

    def _suggest(self, technique_id: str) -> Technique | None:
        text = technique_id.strip().lower()
        by_name = {technique.name.lower(): technique for technique in self._techniques.values()}
        if text in by_name:
            return by_name[text]

        canonical = _canonical(technique_id)
        parent = canonical.split(".")[0]
        if _TECHNIQUE_ID.match(canonical) and "." in canonical and parent in self._techniques:
            return self._techniques[parent]

        close = difflib.get_close_matches(canonical, list(self._techniques), n=1, cutoff=0.75)
        if not close:
            close = difflib.get_close_matches(text, list(by_name), n=1, cutoff=0.75)
            return by_name[close[0]] if close else None
        return self._techniques[close[0]]


@cache
def load_table() -> AttackTable:
    """The packaged ATT&CK Enterprise table, read once per process."""
    text = resources.files("threattune").joinpath(_TABLE_RESOURCE).read_text(encoding="utf-8")
    table = AttackTable.from_dict(json.loads(text))
    logger.debug("loaded ATT&CK v%s: %d techniques", table.version, len(table))
    return table


@dataclass(frozen=True)
class ClassTechniques:
    """The techniques one class stands for; a benign class stands for none."""

    class_name: str
    techniques: tuple[Technique, ...]
    benign: bool = False
    note: str | None = None


@dataclass(frozen=True)
class TacticCoverage:
    """For one tactic: the mapped techniques under it and the classes that map to them."""

    tactic: Tactic
    techniques: tuple[Technique, ...]
    classes: tuple[str, ...]

    @property
    def covered(self) -> bool:
        """True when at least one class maps to a technique of this tactic."""
        return bool(self.techniques)


@dataclass(frozen=True)
class MappingCoverage:
    """Which ATT&CK tactics and techniques a mapping's classes cover, and which classes have none.

    ``tactics`` holds every tactic of the table in matrix order, covered or not.
    ``unmapped_classes`` are classes that are neither benign nor mapped to a technique.
    """

    mapping: str
    attack_version: str
    tactics: tuple[TacticCoverage, ...]
    benign_classes: tuple[str, ...]
    unmapped_classes: tuple[str, ...]

    @property
    def techniques(self) -> tuple[Technique, ...]:
        """Every distinct technique the mapping uses, ordered by ID."""
        unique = {t.id: t for entry in self.tactics for t in entry.techniques}
        return tuple(unique[technique_id] for technique_id in sorted(unique))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "mapping": self.mapping,
            "attack_version": self.attack_version,
            "techniques": [technique.id for technique in self.techniques],
            "tactics": [
                {
                    "id": entry.tactic.id,
                    "shortname": entry.tactic.shortname,
                    "name": entry.tactic.name,
                    "techniques": [technique.id for technique in entry.techniques],
                    "classes": list(entry.classes),
                }
                for entry in self.tactics
            ],
            "uncovered_tactics": [e.tactic.shortname for e in self.tactics if not e.covered],
            "benign_classes": list(self.benign_classes),
            "unmapped_classes": list(self.unmapped_classes),
        }

    def to_markdown(self) -> str:
        """A Markdown table, one row per tactic, then the benign and unmapped classes."""
        lines = [
            f"ATT&CK Enterprise v{self.attack_version} coverage of mapping '{self.mapping}'",
            "",
            "| Tactic | ID | Techniques | Classes |",
            "|---|---|---|---|",
        ]
        for entry in self.tactics:
            techniques = ", ".join(f"{t.id} {t.name}" for t in entry.techniques) or "-"
            classes = ", ".join(entry.classes) or "-"
            cells = [entry.tactic.name, entry.tactic.id, techniques, classes]
            lines.append("| " + " | ".join(_escape_cell(cell) for cell in cells) + " |")

        covered = sum(entry.covered for entry in self.tactics)
        lines += [
            "",
            f"Tactics covered: {covered} of {len(self.tactics)}.",
            f"Benign classes: {', '.join(self.benign_classes) or 'none'}.",
            f"Classes with no technique: {', '.join(self.unmapped_classes) or 'none'}.",
        ]
        return "\n".join(lines) + "\n"


class AttackMapping:
    """Which ATT&CK techniques each class of a classifier stands for.

    Build one with :meth:`from_yaml` (a user's own file), :meth:`builtin` or :meth:`from_dict`
    (as stored with a model by :meth:`to_dict`). Every technique ID is checked against the
    ATT&CK table when the mapping is built.

    >>> mapping = AttackMapping.builtin("cicids2017")
    >>> [technique.id for technique in mapping.techniques_for("SSH-Patator")]
    ['T1110.001']
    """

    def __init__(
        self,
        name: str,
        classes: list[ClassTechniques],
        *,
        table: AttackTable | None = None,
        source: str = "<memory>",
        description: str | None = None,
        dataset: str | None = None,
    ) -> None:
        self.name = name
        self.table = table if table is not None else load_table()
        self.source = source
        self.description = description
        self.dataset = dataset
        self._classes = {entry.class_name: entry for entry in classes}

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the mapping file."""
        return list(self._classes)

    @property
    def attack_version(self) -> str:
        """The ATT&CK release the technique IDs were checked against."""
        return self.table.version

    @classmethod
    def builtin_names(cls) -> list[str]:
        """The names of the mappings that ship with threattune."""
        folder = resources.files("threattune").joinpath(_MAPPING_FOLDER)
        return sorted(
            item.name.removesuffix(".yaml")
            for item in folder.iterdir()
            if item.name.endswith(".yaml")
        )

    @classmethod
    def builtin(cls, name: str, table: AttackTable | None = None) -> AttackMapping:
        """A mapping that ships with threattune: ``nsl-kdd``, ``cicids2017`` or ``phishing``.

        A catalogued dataset name or alias that leads to one of them works too.
        """
        names = cls.builtin_names()
        key = name.strip().lower().replace("_", "-")
        if key not in names:
            key = _builtin_for_dataset(key, names) or key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            raise ConfigError(
                f"no built-in ATT&CK mapping '{name}'"
                + (f" (did you mean '{close[0]}'?)" if close else ""),
                field="attack_mapping",
                expected="one of: " + ", ".join(names),
                found=name,
                fix="name a built-in mapping, or give the path of your own mapping YAML",
            )

        resource = resources.files("threattune").joinpath(f"{_MAPPING_FOLDER}/{key}.yaml")
        with resources.as_file(resource) as path:
            mapping = cls.from_yaml(path, table=table)
        mapping.source = f"builtin:{key}"
        return mapping

    @classmethod
    def from_yaml(cls, path: str | Path, table: AttackTable | None = None) -> AttackMapping:
        """Read and check a mapping YAML; errors name the file, line, class and bad ID."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                "cannot read the ATT&CK mapping file",
                path=path,
                expected="a readable YAML file with a 'classes' mapping",
                found=error.strerror or type(error).__name__,
                fix="check the path given for the mapping",
            ) from error

        try:
            document = yaml.safe_load(text)
            lines = _key_lines(yaml.compose(text))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            raise ConfigError(
                "the ATT&CK mapping file is not valid YAML",
                path=path,
                line=mark.line + 1 if mark is not None else None,
                expected="YAML",
                found=str(getattr(error, "problem", None) or error),
                fix="fix the YAML syntax at that line",
            ) from error
        return cls.from_dict(document, source=str(path), table=table, lines=lines)

    @classmethod
    def from_dict(
        cls,
        document: Any,
        *,
        source: str = "<dict>",
        table: AttackTable | None = None,
        lines: Mapping[tuple[str, ...], int] | None = None,
    ) -> AttackMapping:
        """Build and check a mapping from the YAML layout, or from :meth:`to_dict` output."""
        table = table if table is not None else load_table()
        lines = lines or {}
        if not isinstance(document, Mapping):
            raise ConfigError(
                "an ATT&CK mapping must be a mapping with a 'classes' key",
                path=source,
                expected="name, attack_version, classes",
                found=type(document).__name__,
                fix="see the built-in mappings in threattune/data/attack_mapping for the layout",
            )
        classes = document.get("classes")
        if not isinstance(classes, Mapping) or not classes:
            raise ConfigError(
                "an ATT&CK mapping needs a non-empty 'classes' mapping",
                path=source,
                line=lines.get(("classes",)),
                field="classes",
                expected="class name: {techniques: [T1046, ...], note: ...}",
                found=repr(classes),
                fix="list every class the model predicts under 'classes'",
            )

        unknown = sorted(set(map(str, document)) - _TOP_KEYS)
        if unknown:
            logger.warning("%s: ignoring unknown keys %s", source, ", ".join(unknown))
        version = document.get("attack_version")
        if version is not None and str(version) != table.version:
            logger.warning(
                "%s was written for ATT&CK v%s; checking it against v%s",
                source,
                version,
                table.version,
            )

        entries = [
            _parse_class(str(class_name), value, table, source, lines)
            for class_name, value in classes.items()
        ]
        name = str(document.get("name") or Path(source).stem)
        return cls(
            name,
            entries,
            table=table,
            source=source,
            description=document.get("description"),
            dataset=document.get("dataset"),
        )

    def entry(self, class_name: str) -> ClassTechniques:
        """The mapping of ``class_name``; ConfigError naming the known classes if unknown."""
        if class_name in self._classes:
            return self._classes[class_name]

        close = difflib.get_close_matches(str(class_name), self.classes, n=1, cutoff=0.6)
        raise ConfigError(
            f"class '{class_name}' is not in ATT&CK mapping '{self.name}'"
            + (f" (did you mean '{close[0]}'?)" if close else ""),
            path=self.source,
            field="classes",
            expected="one of: " + ", ".join(self.classes),
            found=str(class_name),
            fix="add the class to the mapping file, or use a mapping made for this model's classes",
        )

    def techniques_for(self, class_name: str) -> list[Technique]:
        """The techniques ``class_name`` stands for, in mapping order; empty for benign classes."""
        return list(self.entry(class_name).techniques)

    def tactics_for(self, class_name: str) -> list[Tactic]:
        """The tactics of the class's techniques, each once, in ATT&CK matrix order."""
        shortnames = {s for t in self.entry(class_name).techniques for s in t.tactics}
        return [tactic for tactic in self.table.tactics if tactic.shortname in shortnames]

    def technique_label(self, class_name: str) -> str:
        """The class's technique IDs joined by ``;``, for a scoring output column.

        >>> AttackMapping.builtin("nsl-kdd").technique_label("normal")
        ''
        """
        return ";".join(technique.id for technique in self.techniques_for(class_name))

    def tactic_label(self, class_name: str) -> str:
        """The class's tactic shortnames joined by ``;``, e.g. ``discovery;reconnaissance``."""
        return ";".join(tactic.shortname for tactic in self.tactics_for(class_name))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict to store with a model; :meth:`from_dict` reads it back.

        Each class lists its technique IDs and, derived from them, its tactics; ``techniques``
        gives the name, tactics and URL of every technique used.
        """
        classes = {
            entry.class_name: {
                "techniques": [technique.id for technique in entry.techniques],
                "tactics": [tactic.shortname for tactic in self.tactics_for(entry.class_name)],
                "benign": entry.benign,
                "note": entry.note,
            }
            for entry in self._classes.values()
        }
        used = {t.id: t for entry in self._classes.values() for t in entry.techniques}
        techniques = {
            technique_id: {
                "name": used[technique_id].name,
                "tactics": list(used[technique_id].tactics),
                "url": used[technique_id].url,
            }
            for technique_id in sorted(used)
        }
        return {
            "name": self.name,
            "dataset": self.dataset,
            "description": self.description,
            "attack_version": self.attack_version,
            "source": self.source,
            "classes": classes,
            "techniques": techniques,
        }

    def techniques_by_class(self) -> dict[str, list[dict[str, Any]]]:
        """Per class, its techniques as ``{"id", "name", "tactics"}`` dicts; JSON-ready.

        >>> AttackMapping.builtin("nsl-kdd").techniques_by_class()["U2R"][0]["id"]
        'T1068'
        """
        return {
            entry.class_name: [
                {"id": t.id, "name": t.name, "tactics": list(t.tactics)} for t in entry.techniques
            ]
            for entry in self._classes.values()
        }

    def coverage(self) -> MappingCoverage:
        """Which tactics and techniques the classes cover, and which classes have none."""
        rows = []
        for tactic in self.table.tactics:
            techniques: dict[str, Technique] = {}
            classes: list[str] = []
            for entry in self._classes.values():
                hits = [t for t in entry.techniques if tactic.shortname in t.tactics]
                techniques.update((t.id, t) for t in hits)
                if hits:
                    classes.append(entry.class_name)
            ordered = tuple(techniques[technique_id] for technique_id in sorted(techniques))
            rows.append(TacticCoverage(tactic, ordered, tuple(classes)))

        entries = self._classes.values()
        return MappingCoverage(
            mapping=self.name,
            attack_version=self.attack_version,
            tactics=tuple(rows),
            benign_classes=tuple(e.class_name for e in entries if e.benign),
            unmapped_classes=tuple(
                e.class_name for e in entries if not e.benign and not e.techniques
            ),
        )

    def __repr__(self) -> str:
        return (
            f"AttackMapping(name={self.name!r}, classes={len(self._classes)}, "
            f"attack_version={self.attack_version!r})"
        )


def _parse_class(
    class_name: str,
    value: Any,
    table: AttackTable,
    source: str,
    lines: Mapping[tuple[str, ...], int],
) -> ClassTechniques:
    field = f"classes.{class_name}"
    where = ("classes", class_name)
    if value is None or isinstance(value, list):
        value = {"techniques": value or []}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"class '{class_name}' must list its techniques",
            path=source,
            line=lines.get(where),
            field=field,
            expected="a list of technique IDs, or {techniques: [...], benign: ..., note: ...}",
            found=repr(value),
            fix=f"write e.g. '{class_name}: [T1046]'",
        )

    unknown = sorted(set(map(str, value)) - _CLASS_KEYS)
    if unknown:
        raise ConfigError(
            f"class '{class_name}' has unknown key(s) {', '.join(unknown)}",
            path=source,
            line=lines.get((*where, unknown[0]), lines.get(where)),
            field=f"{field}.{unknown[0]}",
            expected="techniques, benign, note",
            found=", ".join(unknown),
            fix="remove or rename the key",
        )
    raw_ids = value.get("techniques") or []
    if isinstance(raw_ids, str):
        raw_ids = [raw_ids]
    if not isinstance(raw_ids, list):
        raise ConfigError(
            f"class '{class_name}' has a techniques value that is not a list",
            path=source,
            line=lines.get((*where, "techniques"), lines.get(where)),
            field=f"{field}.techniques",
            expected="a list of technique IDs such as [T1498, T1499]",
            found=repr(raw_ids),
            fix="write the IDs as a YAML list",
        )
    benign = value.get("benign", False)
    if not isinstance(benign, bool):
        raise ConfigError(
            f"class '{class_name}' has a benign value that is not true or false",
            path=source,
            line=lines.get((*where, "benign"), lines.get(where)),
            field=f"{field}.benign",
            expected="true or false",
            found=repr(benign),
            fix="write benign: true for a class that is not an attack, else leave it out",
        )
    if benign and raw_ids:
        raise ConfigError(
            f"class '{class_name}' is marked benign but maps to techniques",
            path=source,
            line=lines.get((*where, "benign"), lines.get(where)),
            field=f"{field}.benign",
            expected="a benign class with no techniques",
            found=f"benign: true, techniques: {raw_ids!r}",
            fix="set benign: false for an attack class, or remove its techniques",
        )

    techniques: list[Technique] = []
    for index, raw_id in enumerate(raw_ids):
        technique_id = str(raw_id)
        if technique_id in table:
            technique = table.technique(technique_id)
            if technique not in techniques:
                techniques.append(technique)
            continue
        found, fix = table.explain_unknown(technique_id)
        raise ConfigError(
            f"class '{class_name}' maps to unknown ATT&CK technique '{technique_id}'",
            path=source,
            line=lines.get((*where, "techniques", str(index)), lines.get(where)),
            field=f"{field}.techniques",
            expected=_expected_id(table.version),
            found=found,
            fix=f"{fix} (in {source})",
        )

    declared = value.get("tactics")
    derived = sorted({s for technique in techniques for s in technique.tactics})
    if declared is not None and sorted(map(str, declared)) != derived:
        logger.warning(
            "%s: tactics of class '%s' are derived from its techniques; ignoring %s",
            source,
            class_name,
            declared,
        )
    note = value.get("note")
    return ClassTechniques(
        class_name, tuple(techniques), benign, None if note is None else str(note)
    )


def _key_lines(node: yaml.Node | None, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """1-based line of every key and list item in a composed YAML document, by key path."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            lines[key_path] = key_node.start_mark.line + 1
            for child_path, line in _key_lines(value_node, key_path).items():
                lines.setdefault(child_path, line)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, str(index))
            lines[item_path] = item.start_mark.line + 1
            for child_path, line in _key_lines(item, item_path).items():
                lines.setdefault(child_path, line)
    return lines


def _builtin_for_dataset(key: str, names: list[str]) -> str | None:
    try:
        dataset = get_dataset(key)
    except ConfigError:
        return None
    for alias in (dataset.name, *dataset.aliases):
        if alias in names:
            return alias
    return None


def _expected_id(version: str) -> str:
    return f"a technique ID of ATT&CK Enterprise v{version}, such as T1046 or T1110.001"


def _canonical(technique_id: str) -> str:
    return str(technique_id).strip().upper()


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|")
