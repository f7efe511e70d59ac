"""Does a read cost more as the registry grows? Point reads, search and list in a store of
4,000 versions and in one of 200,000, through Warden's MLflow endpoints and its native API.

Two Wardens (gunicorn, 2 workers, a Celery worker each, governance and audit on, as in
``mlflow_side_by_side.py``), each on a fresh PostgreSQL database of its own:

1. the shared client (``../shared/bench/registry_bench.py``) writes the same 400 models of 10
   versions into both, through the MLflow endpoints;
2. the large store gets more models of 10 versions, registered through the services in process
   (two loaders at a time, every version audited as any write is) until it holds ``--grow-to``
   versions; then both databases are vacuumed and checkpointed, so that neither is read while
   PostgreSQL is still cleaning up after the load;
3. the same reads of those 400 models (W2 point read, W3 search versions by name, W5 list a page
   of models, at 1 and 8 clients) through each API, the small store then the large, ``--repeats``
   times. This machine's speed drifts by a third from minute to minute (the client's own CPU per
   request, the same work every time, shows it), so a pass is compared only with the pass taken
   right after it.

The table in ``bench/results/registry-growth-<date>.md`` gives each read's median rate in both
stores and the cost ratio: time per read in the large store over the small, the median of the
pairs' ratios (the target is at most 1.2).

    .venv/bin/python bench/registry_growth.py [--grow-to 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlflow_side_by_side import (
    PG,
    RESULTS,
    ROOT,
    SHARED,
    ensure_pg_stat_statements,
    fresh_database,
    postmaster_pid,
    psql,
    sh,
    start_warden,
)

PREFIX = "grow"
BASE_MODELS, VERSIONS_PER_MODEL = 400, 10
ADAPTERS = {
    "warden-mlflow": "bench.warden_adapters:WardenMlflow",
    "warden-native": "bench.warden_adapters:WardenNative",
}
READS = ["--phases", "w2,w3,w5", "--threads", "1,8", "--n-read", "1000", "--n-search", "300", "--n-list", "150"]

LOAD = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from registry import services
first, last = int(os.environ["LOAD_FIRST"]), int(os.environ["LOAD_LAST"])
user = get_user_model().objects.get(username="bench")
team = Group.objects.get(name="bench")
for i in range(first, last):
    model = services.model_register(actor=user, name=f"{PREFIX}-m{i:05d}", team=team)
    for k in range(VERSIONS):
        services.version_create(actor=user, model=model, artifact_uri=f"s3://grow/{i}/{k}")
"""


@dataclass
class Store:
    """One Warden and its database."""

    size: str
    database: str
    port: int
    token: str = ""
    servers: list[Any] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return f"{PG}/{self.database}"

    def start(self, scratch: Path, redis_db: int) -> None:
        (scratch / self.size).mkdir(parents=True, exist_ok=True)
        self.servers, self.pids = start_warden(fresh_database(self.database), scratch / self.size, self.port, redis_db)
        self.token = os.environ["WARDEN_BENCH_TOKEN"]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def count(self, table: str) -> int:
        return int(psql(f"SELECT count(*) FROM {table}", self.database))

    def bench(self, adapter: str, out: Path, label: str, extra: list[str]) -> dict:
        command = [sys.executable, str(SHARED / "registry_bench.py"), "run", "--adapter", adapter]
        command += ["--base-url", f"http://127.0.0.1:{self.port}", "--pg-dsn", self.dsn, "--analyze"]
        command += ["--prefix", PREFIX, "--versions-per-model", str(VERSIONS_PER_MODEL), "--label", label]
        command += ["--watch", f"db={postmaster_pid()}", "--out", str(out), *extra]
        for name, pid in self.pids.items():
            command += ["--watch", f"{name}={pid}"]
        print(f"\n=== {label} ===", flush=True)
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{SHARED}", "WARDEN_BENCH_TOKEN": self.token}
        sh(*command, cwd=ROOT, env=env)
        return json.loads(out.read_text())


def load(dsn: str, first: int, last: int, loaders: int = 2) -> float:
    """Register models ``first``..``last - 1`` through the services, split between loaders."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn.replace("postgresql://", "postgres://"),
        "REDIS_URL": "",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "PYTHONPATH": str(ROOT),
    }
    script = f"PREFIX = {PREFIX!r}\nVERSIONS = {VERSIONS_PER_MODEL}\n" + LOAD
    step = -(-(last - first) // loaders)
    started = time.monotonic()
    python = str(ROOT / ".venv" / "bin" / "python")
    processes = [
        subprocess.Popen(
            [python, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env={**env, "LOAD_FIRST": str(a), "LOAD_LAST": str(min(a + step, last))},
        )
        for a in range(first, last, step)
    ]
    if any(process.wait() for process in processes):
        raise SystemExit("a loader failed")
    return time.monotonic() - started


def table(runs: list[tuple[str, str, dict]]) -> str:
    """One row per API, workload and client count: rates in both stores, p99 and the cost ratio."""
    found: dict[tuple[str, str, int], dict[str, list[dict]]] = {}
    for api, size, result in runs:
        for w in result["workloads"]:
            found.setdefault((api, f"{w['id']} {w['label']}", w["threads"]), {}).setdefault(size, []).append(w)

    def median(ws: list[dict], pick: Any) -> float:
        return statistics.median(pick(w) or 0 for w in ws)

    def rate(w: dict) -> float:
        return w["units_per_s"]

    def p99(w: dict) -> float | None:
        ops = w.get("main_ops") or []
        return w["latency_ms"].get(ops[0], {}).get("p99") if ops else None

    def statements(w: dict) -> float | None:
        return (w.get("db") or {}).get("statements_per_op")

    lines = [
        "| API | workload | clients | reads/s small | reads/s large | p99 ms small | p99 ms large "
        "| SQL stmts small | SQL stmts large | cost large / small |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (api, label, threads), sizes in found.items():
        small, large = sizes.get("small"), sizes.get("large")
        if not small or not large:
            continue
        cells = [api, label, str(threads)]
        for pick in (rate, p99, statements):
            cells += [f"{median(small, pick):,.1f}", f"{median(large, pick):,.1f}"]
        cost = statistics.median(rate(a) / rate(b) for a, b in zip(small, large, strict=True))
        cells.append(f"{cost:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grow-to", type=int, default=200_000, help="versions in the large store")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of passes (small store, large), medians reported")
    args = parser.parse_args()
    ensure_pg_stat_statements()
    stamp = date.today().isoformat()
    scratch = RESULTS / "raw" / f"{stamp}-growth"
    small, large = Store("small", "bench_growth_small", 8056), Store("large", "bench_growth_large", 8057)
    runs: list[tuple[str, str, dict]] = []
    try:
        for redis_db, store in enumerate((small, large), start=12):
            store.start(scratch, redis_db)
            write = ["--phases", "w1", "--threads", "8", "--w1-models", str(BASE_MODELS)]
            store.bench(ADAPTERS["warden-mlflow"], scratch / store.size / "seed.json", f"seed {store.size}", write)
        base = large.count("registry_modelversion")
        need = -(-(args.grow_to - base) // VERSIONS_PER_MODEL)
        seconds = load(large.dsn, BASE_MODELS + 1, BASE_MODELS + 1 + need)
        for store in (small, large):
            psql("VACUUM ANALYZE", store.database)
        psql("CHECKPOINT")
        extra = [*READS, "--existing-models", str(BASE_MODELS)]
        for n in range(1, args.repeats + 1):
            for api, adapter in ADAPTERS.items():
                for store in (small, large):
                    out = scratch / store.size / f"{api}-{n}.json"
                    runs.append((api, store.size, store.bench(adapter, out, f"{api} {store.size} {n}", extra)))
        counts = {
            store.size: (store.count("registry_modelversion"), store.count("registry_registeredmodel"))
            for store in (small, large)
        }
        events = large.count("audit_auditevent")
    finally:
        small.stop()
        large.stop()
    report = RESULTS / f"registry-growth-{stamp}.md"
    report.write_text(
        f"# Reads as the registry grows, {stamp}\n\n"
        f"`bench/registry_growth.py --grow-to {args.grow_to} --repeats {args.repeats}`: two Wardens (gunicorn, "
        "2 workers, governance and audit on) on PostgreSQL, one with a small store and one with a large, the "
        f"same {BASE_MODELS} models of {VERSIONS_PER_MODEL} versions read in both. Small: {counts['small'][0]:,} "
        f"versions of {counts['small'][1]:,} models. Large: {counts['large'][0]:,} versions of "
        f"{counts['large'][1]:,} models and {events:,} audit events (loaded through the services in "
        f"{seconds:.0f} s). Each API read the small store then the large, {args.repeats} times; medians. Cost "
        "large / small is the time per read in the large store over the small, the median of the pairs' ratios "
        "(target: at most 1.20x). Raw results "
        "in `bench/results/raw/`.\n\n" + table(runs) + "\n"
    )
    print(report.read_text())


if __name__ == "__main__":
    main()
