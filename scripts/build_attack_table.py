"""Build threattune's compact ATT&CK Enterprise table from MITRE's STIX objects.

Reads ``enterprise-attack-v18.1_minimal_stix.zip`` from the ``mitre-attack-enterprise`` dataset
(found through ``THREATTUNE_DATA``) and writes two files into ``src/threattune/data``:

- ``attack_techniques.json``: the tactics in matrix order and every live technique and
  sub-technique (revoked and deprecated ones left out, but listed so that an old ID can be
  explained), one per line so that a new ATT&CK release reads as a small diff;
- ``MITRE_NOTICE.txt``: MITRE's copyright designation and licence, which every copy of ATT&CK
  content must reproduce.

Run it after a new ATT&CK release has been added to the dataset catalogue::

    THREATTUNE_DATA=../shared/data python scripts/build_attack_table.py
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

from threattune.catalog import dataset_path, get_dataset, sha256_file

logger = logging.getLogger("build_attack_table")

DATASET = "mitre-attack-enterprise"
STIX_ZIP = "enterprise-attack-v18.1_minimal_stix.zip"
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "threattune" / "data"
COPYRIGHT = (
    "© 2025 The MITRE Corporation. This work is reproduced and distributed with the permission "
    "of The MITRE Corporation."
)
TRADEMARK = "ATT&CK® is a registered trademark of The MITRE Corporation."


def read_stix_objects(zip_path: Path) -> list[dict[str, Any]]:
    """Every STIX object in the zip of one-object bundles."""
    objects: list[dict[str, Any]] = []
    with zipfile.ZipFile(zip_path) as archive:
        for member in sorted(archive.namelist()):
            if member.endswith(".json"):
                objects.extend(json.loads(archive.read(member))["objects"])
    return objects


def attack_id(stix_object: dict[str, Any]) -> tuple[str, str]:
    """The ATT&CK ID and URL of a technique or tactic, from its mitre-attack reference."""
    for reference in stix_object.get("external_references", []):
        if reference.get("source_name") == "mitre-attack":
            return reference["external_id"], reference["url"]
    raise ValueError(f"{stix_object['id']} has no mitre-attack external reference")


def is_live(stix_object: dict[str, Any]) -> bool:
    """False for revoked or deprecated objects, which ATT&CK keeps but no longer uses."""
    return not stix_object.get("revoked", False) and not stix_object.get(
        "x_mitre_deprecated", False
    )


def build_table(objects: list[dict[str, Any]], version: str, source: str) -> dict[str, Any]:
    """The compact table: tactics in matrix order, live techniques, retired technique IDs."""
    by_stix_id = {stix_object["id"]: stix_object for stix_object in objects}
    matrices = [o for o in objects if o["type"] == "x-mitre-matrix" and is_live(o)]
    if len(matrices) != 1:
        raise ValueError(f"expected one live x-mitre-matrix, found {len(matrices)}")

    tactics = []
    for tactic_ref in matrices[0]["tactic_refs"]:
        tactic = by_stix_id[tactic_ref]
        tactic_id, _ = attack_id(tactic)
        tactics.append(
            {"id": tactic_id, "shortname": tactic["x_mitre_shortname"], "name": tactic["name"]}
        )
    tactic_order = {tactic["shortname"]: index for index, tactic in enumerate(tactics)}

    techniques = []
    patterns = [o for o in objects if o["type"] == "attack-pattern"]
    for pattern in patterns:
        if not is_live(pattern):
            continue
        technique_id, url = attack_id(pattern)
        phases = {
            phase["phase_name"]
            for phase in pattern.get("kill_chain_phases", [])
            if phase["kill_chain_name"] == "mitre-attack"
        }
        techniques.append(
            {
                "id": technique_id,
                "name": pattern["name"],
                "tactics": sorted(phases, key=tactic_order.__getitem__),
                "is_subtechnique": bool(pattern.get("x_mitre_is_subtechnique", False)),
                "url": url,
            }
        )
    techniques.sort(key=lambda technique: technique["id"])
    live_ids = {technique["id"] for technique in techniques}

    replaced_by = {
        relation["source_ref"]: relation["target_ref"]
        for relation in objects
        if relation["type"] == "relationship" and relation["relationship_type"] == "revoked-by"
    }
    retired: dict[str, dict[str, Any]] = {}
    for pattern in patterns:
        technique_id, _ = attack_id(pattern)
        if is_live(pattern) or technique_id in live_ids:
            continue
        replacement = by_stix_id.get(replaced_by.get(pattern["id"], ""))
        retired[technique_id] = {
            "name": pattern["name"],
            "reason": "revoked" if pattern.get("revoked", False) else "deprecated",
            "replaced_by": attack_id(replacement)[0] if replacement else None,
        }

    return {
        "version": version,
        "domain": "enterprise-attack",
        "source": source,
        "copyright": COPYRIGHT,
        "tactics": tactics,
        "techniques": techniques,
        "retired": dict(sorted(retired.items())),
    }


def dump_table(table: dict[str, Any]) -> str:
    """JSON with one tactic, technique or retired ID per line, for readable diffs."""
    lines = ["{"]
    for key, value in table.items():
        if isinstance(value, list):
            rows = [f"    {json.dumps(row, ensure_ascii=False)}" for row in value]
            lines.append(f'  "{key}": [\n' + ",\n".join(rows) + "\n  ],")
        elif isinstance(value, dict):
            rows = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            lines.append(f'  "{key}": {{\n' + ",\n".join(rows) + "\n  },")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines[-1] = lines[-1].removesuffix(",")
    return "\n".join(lines) + "\n}\n"


def notice_text(licence: str, version: str) -> str:
    """The notice shipped next to the table: what it holds, the copyright, MITRE's licence."""
    return (
        f"threattune ships src/threattune/data/attack_techniques.json, a table of the tactics\n"
        f"and techniques of MITRE ATT&CK Enterprise v{version} (IDs, names, tactics and URLs),\n"
        f"derived from MITRE's STIX data at https://github.com/mitre/cti.\n"
        f"\n"
        f"{COPYRIGHT}\n"
        f"\n"
        f"{TRADEMARK}\n"
        f"\n"
        f"MITRE's licence for ATT&CK follows, reproduced verbatim from LICENSE.txt in\n"
        f"https://github.com/mitre/cti.\n"
        f"\n"
        f"{licence}"
    )


def main() -> None:
    """Read the STIX zip and licence from the dataset and write the table and notice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    stix_path = dataset_path(DATASET, STIX_ZIP)
    licence_path = dataset_path(DATASET, "LICENSE.txt")
    expected = get_dataset(DATASET).file(STIX_ZIP).sha256
    if sha256_file(stix_path) != expected:
        raise SystemExit(f"{stix_path} fails its checksum; expected sha256 {expected}")
    match = re.search(r"-v(\d+\.\d+)_", STIX_ZIP)
    if match is None:
        raise SystemExit(f"no ATT&CK version in {STIX_ZIP}")
    version = match.group(1)

    table = build_table(read_stix_objects(stix_path), version, f"{STIX_ZIP} sha256:{expected}")
    subtechniques = sum(technique["is_subtechnique"] for technique in table["techniques"])
    logger.info(
        "ATT&CK v%s: %d tactics, %d techniques (%d sub-techniques), %d retired IDs",
        version,
        len(table["tactics"]),
        len(table["techniques"]),
        subtechniques,
        len(table["retired"]),
    )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "attack_techniques.json").write_text(dump_table(table), encoding="utf-8")
    notice = notice_text(licence_path.read_text(encoding="utf-8"), version)
    (args.out_dir / "MITRE_NOTICE.txt").write_text(notice, encoding="utf-8")
    logger.info("wrote attack_techniques.json and MITRE_NOTICE.txt to %s", args.out_dir)


if __name__ == "__main__":
    main()
