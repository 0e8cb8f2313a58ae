"""The verdict store: atomic and idempotent imports, updates, queries, stats, concurrency.

Store tests run against SQLite and, where the PostgreSQL server binaries and the pg8000 driver
are installed, against a throwaway PostgreSQL server started in a temporary folder.
"""

from __future__ import annotations

import csv
import doctest
import glob
import json
import multiprocessing
import os
import pickle
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from threattune import verdicts
from threattune.errors import ConfigError, DataError
from threattune.verdicts import (
    FALSE_POSITIVE,
    ImportRejected,
    Verdict,
    VerdictStore,
    normalise_verdict,
)

MODEL = "models:/threattune-nsl-kdd/3"
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SPELLINGS = ["tp", "FALSE_POSITIVE", "benign true positive"]


def _rows(count: int, *, first: int = 0, model: str = MODEL) -> list[dict[str, Any]]:
    """Verdict records as an analyst's export would hold them: mixed spellings, naive times."""
    return [
        {
            "alert_id": f"alert-{n:05d}",
            "model_version": model,
            "verdict": SPELLINGS[n % 3],
            "root_cause": "Backup job" if n % 3 == 1 else "",
            "note": f"checked host {n}" if n % 4 == 0 else "",
            "analyst": "kim" if n % 2 else "lee",
            "time": (START + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S"),
            "predicted_class": "dos",
            "score": round(0.5 + (n % 50) / 100, 2),
        }
        for n in range(first, first + count)
    ]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# --- a throwaway PostgreSQL server -----------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    deadline = time.monotonic() + 30
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"PostgreSQL exited early:\n{log.read_text(errors='replace')}")
            try:
                with engine.connect():
                    return
            except sa.exc.DBAPIError:
                if time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server of this module only, stopped by PID at teardown."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    pytest.importorskip("pg8000", reason="the pg8000 driver is not installed")

    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL refuses to run as root and there is no 'postgres' account")
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        root = Path(tempfile.mkdtemp(prefix="threattune-pg-"))
        os.chown(root, account.pw_uid, account.pw_gid)
    else:
        root = tmp_path_factory.mktemp("postgres")
    data, log = root / "data", root / "server.log"

    try:
        subprocess.run(
            [bindir / "initdb", "-D", data, "-U", "threattune", "--auth=trust", "--no-locale",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, cwd=root, timeout=120, **as_user,
        )  # fmt: skip
        port = _free_port()
        with log.open("wb") as output:
            server = subprocess.Popen(
                [bindir / "postgres", "-D", data, "-p", str(port), "-h", "127.0.0.1",
                 "-k", "", "-c", "fsync=off", "-c", "full_page_writes=off"],
                stdout=output, stderr=subprocess.STDOUT, cwd=root, **as_user,
            )  # fmt: skip
        try:
            url = f"postgresql+pg8000://threattune@127.0.0.1:{port}/postgres"
            _wait_for_server(url, server, log)
            yield url
        finally:
            os.kill(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
    finally:
        if as_user:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh database on the server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'verdicts.db'}"

    server = request.getfixturevalue("postgres_server")
    name = f"verdicts_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return f"{server.rsplit('/', 1)[0]}/{name}"


@pytest.fixture()
def store(store_url: str) -> Iterator[VerdictStore]:
    with VerdictStore(store_url) as opened:
        yield opened


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Iterator[VerdictStore]:
    with VerdictStore(f"sqlite:///{tmp_path / 'verdicts.db'}") as opened:
        yield opened


# --- work done in child processes ------------------------------------------------------------


def _import_together(url: str, path: str, barrier: Any, results: Any) -> None:
    """Import ``path`` as soon as the other child is ready too; report the counts."""
    barrier.wait(timeout=60)
    try:
        summary = VerdictStore(url).import_file(path)
        results.put(("ok", summary.inserted, summary.unchanged, summary.updated))
    except Exception as error:  # reported to the parent, which fails the test
        results.put(("error", repr(error)))


def _import_and_hang(url: str, path: str, written: Any) -> None:
    """Import ``path``, but stop forever after the first batch is written, inside the
    transaction, so that the parent can kill this process there."""

    def hang(count: int) -> None:
        written.set()
        time.sleep(300)

    verdicts._batch_written = hang
    VerdictStore(url).import_file(path)


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive() and process.pid is not None:
        os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=30)


# --- verdicts --------------------------------------------------------------------------------


def test_doctests() -> None:
    assert doctest.testmod(verdicts).failed == 0


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("tp", "true-positive"),
        ("TRUE_POSITIVE", "true-positive"),
        ("True Positive", "true-positive"),
        ("TruePositive", "true-positive"),
        ("fp", "false-positive"),
        ("false-positive", "false-positive"),
        (" False_Positive ", "false-positive"),
        ("btp", "benign-true-positive"),
        ("benign true positive", "benign-true-positive"),
        ("BenignPositive", "benign-true-positive"),
    ],
)
def test_verdict_spellings(spelling: str, canonical: str) -> None:
    assert normalise_verdict(spelling) == canonical


def test_verdict_normalises_its_values() -> None:
    verdict = Verdict(
        " 4711 ", MODEL, "FP", "kim", "2025-03-01 09:30", root_cause=" Scanner  allowlisted ",
        note="  ", extra={"score": 0.93, "features": {"dst_port": 22}},
    )  # fmt: skip
    east = Verdict(4711, "threattune-nsl-kdd/3", "false_positive", "kim", "2025-03-01T11:30+02:00")

    assert verdict.alert_id == "4711"
    assert verdict.model_version == "threattune-nsl-kdd/3"
    assert verdict.verdict == FALSE_POSITIVE
    assert verdict.time == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    assert verdict.time.tzinfo is UTC
    assert verdict.root_cause == "scanner-allowlisted"
    assert verdict.note is None
    assert verdict.key == east.key
    assert verdict.content_hash != east.content_hash
    assert hash(verdict) == hash(verdict)
    aware = datetime(2025, 3, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert Verdict("a", "m/1", "tp", "kim", aware).time == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"verdict": "undetermined"}, "verdict"),
        ({"alert_id": "  "}, "alert_id"),
        ({"analyst": None}, "analyst"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2025-03-01"}, "time"),
        ({"model_version": "models:/threattune-nsl-kdd@champion"}, "model_version"),
        ({"extra": {"score": float("nan")}}, "extra"),
        ({"extra": {"seen": object()}}, "extra"),
    ],
)
def test_verdict_rejects_bad_values(changes: dict[str, Any], field: str) -> None:
    values = {"alert_id": "a-1", "model_version": MODEL, "verdict": "tp", "analyst": "kim",
              "time": "2025-03-01T09:30:00Z", **changes}  # fmt: skip
    with pytest.raises(DataError) as caught:
        Verdict(**values)
    assert caught.value.field == field
    assert caught.value.expected


# --- importing -------------------------------------------------------------------------------


def test_import_csv_and_jsonl(store: VerdictStore, tmp_path: Path) -> None:
    from_csv = store.import_file(_write_csv(tmp_path / "verdicts.csv", _rows(12)))
    from_jsonl = store.import_file(_write_jsonl(tmp_path / "more.jsonl", _rows(8, first=12)))

    assert (from_csv.inserted, from_csv.unchanged, from_csv.updated, from_csv.rejected) == (
        12, 0, 0, 0,
    )  # fmt: skip
    assert (from_jsonl.inserted, from_jsonl.total) == (8, 8)
    assert store.count() == 20
    stored = {verdict.alert_id: verdict for verdict in store.list()}
    first, later = stored["alert-00001"], stored["alert-00013"]
    assert first == Verdict(
        "alert-00001", "threattune-nsl-kdd/3", "false-positive", "kim",
        START + timedelta(minutes=1), root_cause="backup-job",
        extra={"predicted_class": "dos", "score": "0.51"},
    )  # fmt: skip
    assert later.extra == {"predicted_class": "dos", "score": 0.63}
    assert stored["alert-00004"].note == "checked host 4"


def test_reimport_changes_nothing(store: VerdictStore, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "verdicts.csv", _rows(30))
    store.import_file(path)
    before = store.list()

    again = store.import_file(path)
    same_as_jsonl = store.import_records(
        [{**row, "score": str(row["score"])} for row in _rows(30)], source="service"
    )

    assert (again.inserted, again.unchanged, again.updated) == (0, 30, 0)
    assert (same_as_jsonl.inserted, same_as_jsonl.unchanged, same_as_jsonl.updated) == (0, 30, 0)
    assert store.count() == 30
    assert store.list() == before


def test_exact_repeats_in_one_file_are_stored_once(store: VerdictStore, tmp_path: Path) -> None:
    rows = _rows(5)
    summary = store.import_file(_write_jsonl(tmp_path / "twice.jsonl", rows + rows[:2]))

    assert (summary.inserted, summary.unchanged, summary.total) == (5, 2, 7)
    assert store.count() == 5


BAD_ROWS = {
    "unknown verdict": ({"verdict": "maybe"}, "verdict"),
    "missing alert id": ({"alert_id": ""}, "alert_id"),
    "bad time": ({"time": "01/03/2025 9:30"}, "time"),
}


@pytest.mark.parametrize("fault", list(BAD_ROWS))
def test_bad_row_on_line_7_stores_nothing(store: VerdictStore, tmp_path: Path, fault: str) -> None:
    store.import_file(_write_csv(tmp_path / "earlier.csv", _rows(4, first=100)))
    before = store.list()
    prior = store.list(limit=1)[0]
    changes, field = BAD_ROWS[fault]
    rows = _rows(9)
    rows[5].update(changes)  # the header is line 1, so the sixth row is line 7
    rows[1]["alert_id"] = prior.alert_id  # a row that would have updated a stored verdict
    path = _write_csv(tmp_path / "monday.csv", rows)

    with pytest.raises(ImportRejected) as caught:
        store.import_file(path)

    error = caught.value
    assert isinstance(error, DataError)
    assert (error.path, error.line, error.field) == (str(path), 7, field)
    assert f"monday.csv:7: field '{field}'" in str(error)
    assert error.expected and error.found is not None and error.fix
    assert "nothing from this file was stored" in str(error)
    assert error.summary.rejected == 1
    assert store.count() == 4
    assert store.list() == before
    assert store.list(limit=1)[0] == prior


def test_every_bad_row_is_listed(sqlite_store: VerdictStore, tmp_path: Path) -> None:
    rows = _rows(10)
    rows[2]["verdict"] = "maybe"
    rows[6]["time"] = "soon"
    path = _write_jsonl(tmp_path / "verdicts.jsonl", rows)
    path.write_text(path.read_text() + "{not json\n")

    with pytest.raises(ImportRejected) as caught:
        sqlite_store.import_file(path)

    assert [(p.line, p.field) for p in caught.value.problems] == [
        (3, "verdict"), (7, "time"), (11, None),
    ]  # fmt: skip
    assert caught.value.line == 3
    copied = pickle.loads(pickle.dumps(caught.value))
    assert (copied.line, copied.field, len(copied.problems)) == (3, "verdict", 3)
    assert "3 bad rows, on lines 3, 7, 11" in str(caught.value)
    assert sqlite_store.count() == 0


def test_header_without_a_required_column(sqlite_store: VerdictStore, tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "analyst"} for row in _rows(3)]

    with pytest.raises(DataError) as caught:
        sqlite_store.import_file(_write_csv(tmp_path / "verdicts.csv", rows))

    assert (caught.value.line, caught.value.field) == (1, "analyst")


def test_file_errors(sqlite_store: VerdictStore, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown verdict file type"):
        sqlite_store.import_file(tmp_path / "verdicts.xlsx")
    with pytest.raises(DataError, match="not found"):
        sqlite_store.import_file(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        sqlite_store.import_file(tmp_path / "empty.csv")


def test_two_rows_with_one_key_and_different_verdicts(
    sqlite_store: VerdictStore, tmp_path: Path
) -> None:
    rows = _rows(4)
    rows.append({**rows[1], "verdict": "tp"})

    with pytest.raises(ImportRejected) as caught:
        sqlite_store.import_file(_write_csv(tmp_path / "verdicts.csv", rows))

    assert (caught.value.line, caught.value.field) == (6, "verdict")
    assert "line 3" in caught.value.message
    assert sqlite_store.count() == 0


def test_changed_verdict_is_an_update(store: VerdictStore, tmp_path: Path) -> None:
    rows = _rows(10)
    store.import_file(_write_csv(tmp_path / "verdicts.csv", rows))
    rows[3]["verdict"] = "false positive"
    rows[3]["root_cause"] = "scanner-allowlisted"
    rows[4]["note"] = "second look: expected"

    summary = store.import_file(_write_csv(tmp_path / "revised.csv", rows))

    assert (summary.inserted, summary.unchanged, summary.updated) == (0, 8, 2)
    assert [(c.line, c.after.alert_id, c.fields) for c in summary.changes] == [
        (5, "alert-00003", ["verdict", "root_cause"]),
        (6, "alert-00004", ["note"]),
    ]
    assert summary.changes[0].before.verdict == "true-positive"
    assert summary.to_dict()["changes"][0]["after"] == "false-positive"
    assert store.count() == 10
    revised = {v.alert_id: v for v in store.list(verdict="fp", analyst="kim")}["alert-00003"]
    assert revised.root_cause == "scanner-allowlisted"
    with store.engine.connect() as connection:
        kept = connection.execute(sa.select(verdicts._revisions.c.verdict)).scalars().all()
    assert sorted(kept) == ["false-positive", "true-positive"]
    again = store.import_file(tmp_path / "revised.csv")
    assert (again.unchanged, again.updated) == (10, 0)


def test_interrupted_import_stores_nothing(
    store: VerdictStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_file(_write_csv(tmp_path / "earlier.csv", _rows(3, first=5000)))
    before = store.list()
    written: list[int] = []

    def fail_after_first_batch(count: int) -> None:
        written.append(count)
        raise KeyboardInterrupt

    monkeypatch.setattr(verdicts, "_batch_written", fail_after_first_batch)
    rows = _rows(1200)
    rows[0]["alert_id"] = before[0].alert_id  # an update in the first batch
    rows[0]["time"] = before[0].time.isoformat()
    rows[0]["model_version"] = before[0].model_version
    rows[0]["analyst"] = before[0].analyst
    path = _write_csv(tmp_path / "large.csv", rows)
    with pytest.raises(KeyboardInterrupt):
        store.import_file(path)

    assert written == [verdicts._BATCH_ROWS]
    assert store.count() == 3
    assert store.list() == before
    monkeypatch.undo()
    assert store.import_file(path).inserted == 1199


def test_killed_import_stores_nothing(sqlite_store: VerdictStore, tmp_path: Path) -> None:
    sqlite_store.import_file(_write_csv(tmp_path / "earlier.csv", _rows(3, first=5000)))
    before = sqlite_store.list()
    path = _write_csv(tmp_path / "large.csv", _rows(2000))
    context = multiprocessing.get_context("spawn")
    written = context.Event()
    child = context.Process(
        target=_import_and_hang, args=(sqlite_store.url, str(path), written), daemon=True
    )

    child.start()
    try:
        assert written.wait(timeout=60), "the import in the child never wrote a batch"
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        _stop(child)

    assert child.exitcode == -signal.SIGKILL
    assert sqlite_store.count() == 3
    assert sqlite_store.list() == before
    with sqlite_store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    assert sqlite_store.import_file(path).inserted == 2000


def test_a_writer_that_loses_the_race_retries(
    store: VerdictStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_csv(tmp_path / "verdicts.csv", _rows(20))
    store.import_file(path)
    looked_up = verdicts._stored
    attempts: list[int] = []

    def stale_on_first_attempt(connection: Any, batch: list[Verdict]) -> dict:
        """The first read misses what another writer committed, as if it read just before."""
        attempts.append(len(batch))
        return {} if len(attempts) == 1 else looked_up(connection, batch)

    monkeypatch.setattr(verdicts, "_stored", stale_on_first_attempt)
    summary = store.import_file(path)

    assert attempts == [20, 20]
    assert (summary.inserted, summary.unchanged, summary.updated) == (0, 20, 0)
    assert store.count() == 20


def test_concurrent_imports_store_each_verdict_once(store_url: str, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "verdicts.csv", _rows(1500))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_import_together, args=(store_url, str(path), barrier, results))
        for _ in range(2)
    ]

    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=90) for _ in children]
    finally:
        for child in children:
            _stop(child)

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    assert sorted(outcome[1:] for outcome in outcomes) == [(0, 1500, 0), (1500, 0, 0)]
    with VerdictStore(store_url) as store:
        assert store.count() == 1500
        assert len({verdict.key for verdict in store.list(limit=None)}) == 1500


# --- reading ---------------------------------------------------------------------------------


def _hand_built() -> list[Verdict]:
    """Model 3: 11 verdicts on 10 alerts; a-0 is judged twice (fp by kim, later tp by lee), so
    its latest verdicts are 3 tp, 5 fp, 2 btp. Model 4: 4 alerts, 1 fp and 3 tp."""
    at = START
    plan = [
        ("a-0", "fp", "backup-job"), ("a-1", "tp", None), ("a-2", "tp", None),
        ("a-3", "fp", "backup-job"), ("a-4", "fp", "backup-job"), ("a-5", "fp", "backup-job"),
        ("a-6", "fp", "scanner-allowlisted"), ("a-7", "fp", "scanner-allowlisted"),
        ("a-8", "btp", "admin-activity"), ("a-9", "btp", None),
    ]  # fmt: skip
    found = [
        Verdict(alert, MODEL, verdict, "kim", at + timedelta(minutes=n), root_cause=cause)
        for n, (alert, verdict, cause) in enumerate(plan)
    ]
    found.append(Verdict("a-0", MODEL, "tp", "lee", at + timedelta(hours=2)))
    found += [
        Verdict(f"b-{n}", "threattune-nsl-kdd/4", "fp" if n == 0 else "tp", "lee", at)
        for n in range(4)
    ]
    return found


def test_stats_on_a_hand_built_set(store: VerdictStore) -> None:
    store.import_records(_hand_built())

    stats = store.stats()
    three = stats["by_model_version"]["threattune-nsl-kdd/3"]
    four = store.stats("models:/threattune-nsl-kdd/4")

    assert (stats["verdicts"], stats["alerts"]) == (15, 14)
    assert (three["verdicts"], three["alerts"]) == (11, 10)
    assert three["by_verdict"] == {
        "true-positive": 3, "false-positive": 5, "benign-true-positive": 2,
    }  # fmt: skip
    assert three["by_root_cause"] == {
        "backup-job": 3, "scanner-allowlisted": 2, "admin-activity": 1,
    }  # fmt: skip
    assert three["without_root_cause"] == 4
    share = three["false_positive_share"]
    assert share["share"] == pytest.approx(0.5)
    # Wilson 95 % for 5 of 10, worked by hand: centre 0.5, half-width 0.263407
    assert share["low"] == pytest.approx(0.236593, abs=1e-6)
    assert share["high"] == pytest.approx(0.763407, abs=1e-6)
    assert share["confidence"] == 0.95
    assert four["alerts"] == 4
    assert four["false_positive_share"]["share"] == pytest.approx(0.25)
    assert list(four["by_model_version"]) == ["threattune-nsl-kdd/4"]
    assert stats["by_verdict"] == {
        "true-positive": 6, "false-positive": 6, "benign-true-positive": 2,
    }  # fmt: skip
    assert store.stats("threattune-nsl-kdd/9")["false_positive_share"]["share"] is None


def test_list_filters_and_frame(sqlite_store: VerdictStore) -> None:
    sqlite_store.import_records(
        [
            Verdict(f"a-{n}", MODEL, "fp" if n % 2 else "tp", "kim",
                    START + timedelta(hours=n), extra={"host": f"h{n}", "features": {"port": n}})
            for n in range(6)
        ]
        + [Verdict("c-0", "other/1", "btp", "lee", START)]
    )  # fmt: skip

    assert len(sqlite_store.list()) == 7
    assert [v.alert_id for v in sqlite_store.list(MODEL, "fp")] == ["a-1", "a-3", "a-5"]
    window = sqlite_store.list(since="2025-03-01T09:00:00Z", until=START + timedelta(hours=3))
    assert [v.alert_id for v in window] == ["a-1", "a-2"]
    assert [v.alert_id for v in sqlite_store.list(limit=2, newest_first=True)] == ["a-5", "a-4"]
    assert sqlite_store.count("threattune-nsl-kdd/3", analyst="kim") == 6
    with pytest.raises(ConfigError):
        sqlite_store.list(verdict="maybe")
    with pytest.raises(ConfigError):
        sqlite_store.list(limit=-1)

    frame = sqlite_store.to_frame(model_version=MODEL, flatten_extra=True)
    assert len(frame) == 6
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert list(frame["extra.features.port"]) == list(range(6))
    assert frame.loc[0, "extra.host"] == "h0"
    assert list(sqlite_store.to_frame(verdict="tp").columns)[-1] == "extra"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".tsv"])
def test_export_imports_back_unchanged(
    sqlite_store: VerdictStore, tmp_path: Path, suffix: str
) -> None:
    sqlite_store.import_records(_hand_built())
    sqlite_store.import_file(_write_jsonl(tmp_path / "more.jsonl", _rows(5)))
    path = tmp_path / "out" / f"verdicts{suffix}"

    exported = sqlite_store.export(path)
    again = sqlite_store.import_file(path)
    with VerdictStore(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        copy.import_file(path)
        copied = copy.list()

    assert exported == 20
    assert (again.inserted, again.unchanged, again.updated) == (0, 20, 0)
    assert copied == sqlite_store.list()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# --- the database ----------------------------------------------------------------------------


def test_sqlite_settings_and_schema_version(sqlite_store: VerdictStore) -> None:
    with sqlite_store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        version = connection.execute(sa.select(verdicts._schema_versions.c.version))
        assert version.scalars().all() == [verdicts.SCHEMA_VERSION]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'verdicts.db'}"
    with VerdictStore(url) as store, store.engine.begin() as connection:
        connection.execute(
            sa.insert(verdicts._schema_versions).values(version=99, applied_at=START)
        )

    with pytest.raises(DataError, match="newer threattune"):
        VerdictStore(url).count()


def test_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        VerdictStore("not a url").count()
    assert caught.value.field == "url"
    with pytest.raises(ConfigError, match="cannot open"):
        VerdictStore(f"sqlite:///{tmp_path / 'absent' / 'verdicts.db'}").count()
    with pytest.raises(ConfigError, match="driver"):
        VerdictStore("postgresql+nosuchdriver://localhost/verdicts").count()
