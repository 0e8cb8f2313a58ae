"""REST service load: throughput and latency of flow scoring over loopback, bounded in time.

    python benchmarks/service_load.py [--model FOLDER] [--clients 4] [--seconds 20]

Starts ``threattune serve`` as a subprocess on a free loopback port with a fresh SQLite store,
then runs two scenarios one after the other, each for ``--seconds``: requests of one flow and
requests of 1,000 flows (KDDTest+ rows as JSON), sent by ``--clients`` threads with their own
HTTP connection. Every request goes the whole way: key check, body limit, JSON parsing,
fingerprint check, scoring, and the alerts committed to SQLite (WAL, synchronous=FULL) before
the answer. Without ``--model`` a small NSL-KDD model (20,000 KDDTrain+ flows, one setting) is
trained first into the work folder (reused on the next run). Results print as Markdown and
land in ``benchmarks/results/service_load.json``. The client and the server share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
SCENARIOS = (("single flow", 1), ("1,000 flows", 1_000))


def _model(workdir: Path) -> Path:
    """A small NSL-KDD model in ``workdir``, trained once."""
    from threattune import training
    from threattune.catalog import dataset_path
    from threattune.tasks import FlowTask

    folder = workdir / "model-run"
    if (folder / "model" / "manifest.json").is_file():
        return folder / "model"
    train = workdir / "train.txt"
    with dataset_path("nsl-kdd", "KDDTrain+.txt").open(encoding="utf-8") as source:
        train.write_text("".join(line for _, line in zip(range(20_000), source, strict=False)))
    task = FlowTask(
        name="service-load",
        train=(str(train),),
        reader="nsl-kdd",
        attack_mapping="nsl-kdd",
        model={"max_depth": 6, "class_weight": "none", "max_rounds": 100},
        base_dir=workdir,
    )
    return training.train(task, output_dir=folder, track=False, register=False).model_folder


def _flows(count: int) -> list[dict[str, Any]]:
    from threattune.catalog import dataset_path
    from threattune.sources.flows import load_nsl_kdd

    features = load_nsl_kdd(dataset_path("nsl-kdd", "KDDTest+.txt")).features
    return features.head(count).to_dict(orient="records")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(model: Path, workdir: Path) -> tuple[subprocess.Popen, str, str]:
    from threattune.service.keys import KeyRing
    from threattune.service.store import ServiceStore

    store = f"sqlite:///{workdir / 'service.db'}"
    Path(store.removeprefix("sqlite:///")).unlink(missing_ok=True)
    with ServiceStore(store) as service_store:
        key, _ = KeyRing(service_store).add("load", ["write"])
    port = _free_port()
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "threattune.cli", "serve", "--model", str(model), "--host",
         "127.0.0.1", "--port", str(port), "--store", store],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited; see {workdir / 'serve.log'}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return process, url, key
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the service did not become ready within 120 s")


def _run(url: str, key: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads posting ``body`` until ``seconds`` have passed; latencies in s."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    headers = {"X-API-Key": key, "content-type": "application/json"}
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as session:
            for _ in range(2):
                session.post("/api/v1/flows/score", content=body)
            start.wait()
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                response = session.post("/api/v1/flows/score", content=body)
                if response.status_code == 200:
                    latencies[index].append(time.perf_counter() - began)
                else:
                    errors[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    done = np.asarray([x for per_client in latencies for x in per_client])
    return {
        "requests": int(done.size),
        "errors": int(sum(errors)),
        "seconds": elapsed,
        "requests_per_second": done.size / elapsed,
        "latency_ms": {
            "p50": float(np.percentile(done, 50) * 1000) if done.size else None,
            "p90": float(np.percentile(done, 90) * 1000) if done.size else None,
            "p99": float(np.percentile(done, 99) * 1000) if done.size else None,
            "max": float(done.max() * 1000) if done.size else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A flow model folder (default: train one).")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of each scenario.")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tt-load")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "service_load.json")
    args = parser.parse_args()
    os.environ.setdefault("THREATTUNE_DATA", str(HERE.parent.parent / "shared" / "data"))
    args.workdir.mkdir(parents=True, exist_ok=True)

    model = args.model or _model(args.workdir)
    flows = _flows(max(n for _, n in SCENARIOS))
    load_before = os.getloadavg()
    process, url, key = _start(model, args.workdir)
    results = []
    try:
        for name, count in SCENARIOS:
            body = json.dumps({"flows": flows[:count]}).encode()
            measured = _run(url, key, body, args.clients, args.seconds)
            measured.update(scenario=name, flows_per_request=count, body_bytes=len(body))
            measured["flows_per_second"] = measured["requests_per_second"] * count
            results.append(measured)
    finally:
        process.terminate()
        process.wait(timeout=60)
    report = {
        "command": "python benchmarks/service_load.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "note": "client threads and the service share the same cores",
        },
        "clients": args.clients,
        "model": str(model),
        "scenarios": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print("| scenario | clients | requests | req/s | flows/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        latency = r["latency_ms"]
        print(
            f"| {r['scenario']} | {args.clients} | {r['requests']:,} | "
            f"{r['requests_per_second']:,.1f} | {r['flows_per_second']:,.0f} | "
            f"{latency['p50']:.1f} | {latency['p99']:.1f} | {r['errors']} |"
        )
    print(f"\nresults: {args.output}")


if __name__ == "__main__":
    main()
