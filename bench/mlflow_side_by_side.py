"""Warden next to MLflow's registry server, on the same machine, PostgreSQL and workload.

Runs ``../shared/bench/registry_bench.py`` against three systems, alternating them round by
round (A B C A B C …), each on a fresh database:

- ``mlflow``: MLflow's server exactly as ``../shared/bench/mlflow-baseline.md`` describes it
  (``mlflow server --workers 2`` on PostgreSQL, in its own venv, with the one-line uvicorn
  TCP_NODELAY fix so the peer runs at its best);
- ``warden-mlflow``: Warden's ``/api/2.0/mlflow/`` endpoints;
- ``warden-native``: Warden's ``/api/v1/`` API.

Warden runs under gunicorn with the same number of workers, governance and audit on, with a
Celery worker (counted in its CPU, as MLflow's job runner is in MLflow's). The alias the
workload moves is ``candidate`` for every system: Warden's ``champion`` and ``production`` are
protected and would refuse an unapproved version, which is the point of Warden, not a cost.

Writes every raw result to ``bench/results/raw/`` and one table of median ratios to
``bench/results/mlflow-side-by-side-<date>-<commit>.md``. Needs root (it may enable
``pg_stat_statements``, as the baseline did) and network access to the package index once, for
MLflow's venv. Usage::

    .venv/bin/python bench/mlflow_side_by_side.py                 # 3 rounds, full workload
    .venv/bin/python bench/mlflow_side_by_side.py --rounds 1 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
RESULTS = ROOT / "bench" / "results"
MLFLOW_VENV = ROOT / "bench" / ".venv-mlflow"
PG = "postgresql://postgres@127.0.0.1:5432"
PORTS = {"mlflow": 5055, "warden": 8055}
WORKERS = 2
QUICK = [
    "--w1-models=40", "--n-ping=300", "--n-read=400", "--n-search=150", "--n-alias=150",
    "--n-list=60", "--grow-to=4000", "--hot-versions=80",
]  # fmt: skip


def sh(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, **kwargs)  # type: ignore[call-overload]


def run_stamp() -> str:
    """Today's date and the commit measured, so a second run on the same day does not overwrite the first."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    )
    commit = head.stdout.strip() or "unversioned"
    return f"{date.today().isoformat()}-{commit}{'-dirty' if dirty.stdout.strip() else ''}"


def psql(sql: str, db: str = "postgres") -> str:
    out = sh("psql", f"{PG}/{db}", "-v", "ON_ERROR_STOP=1", "-Atc", sql, capture_output=True, text=True)
    return out.stdout.strip()


def ensure_pg_stat_statements() -> None:
    if "pg_stat_statements" in psql("SHOW shared_preload_libraries"):
        return
    print("enabling pg_stat_statements (as the MLflow baseline did) and restarting PostgreSQL", flush=True)
    psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    sh("pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart")
    time.sleep(2)


def fresh_database(name: str) -> str:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", name)
    return f"{PG}/{name}"


def mlflow_venv() -> Path:
    """MLflow 3.17.2 in its own venv, with uvicorn's TCP_NODELAY fix (uvicorn issue #3149)."""
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        sh(sys.executable, "-m", "venv", str(MLFLOW_VENV))
        sh(str(python), "-m", "pip", "install", "--quiet", "mlflow==3.17.2", "psycopg2-binary", "requests")
    config = Path(
        sh(
            str(python), "-c", "import uvicorn.config as c; print(c.__file__)", capture_output=True, text=True
        ).stdout.strip()
    )
    text = config.read_text()
    stock = "sock = socket.socket(family=family)"
    if stock in text:
        config.write_text(
            text.replace(
                stock, "sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)"
            )
        )
    return MLFLOW_VENV


def wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def postmaster_pid() -> int:
    data_dir = psql("SHOW data_directory")
    return int(Path(data_dir, "postmaster.pid").read_text().split()[0])


class Server:
    """A process group started for one round and stopped with it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log.open("w")
        self.process = subprocess.Popen(
            args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def start_mlflow(dsn: str, scratch: Path) -> tuple[list[Server], dict[str, int]]:
    venv = mlflow_venv()
    store = dsn.replace("postgresql://", "postgresql+psycopg2://")
    args = [str(venv / "bin" / "mlflow"), "server", "--backend-store-uri", store]
    args += ["--default-artifact-root", str(scratch / "artifacts"), "--host", "127.0.0.1"]
    args += ["--port", str(PORTS["mlflow"]), "--workers", str(WORKERS)]
    server = Server(args, {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}, scratch / "mlflow.log")
    wait_for(f"http://127.0.0.1:{PORTS['mlflow']}/health")
    time.sleep(20)  # the job runner's consumers import for about 10 s after /health answers
    return [server], {"server": server.process.pid}


def start_warden(
    dsn: str, scratch: Path, port: int = PORTS["warden"], redis_db: int = 14
) -> tuple[list[Server], dict[str, int]]:
    """Warden on ``port``, its Celery worker on Redis database ``redis_db``; the bench user's
    token goes to ``WARDEN_BENCH_TOKEN``."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn.replace("postgresql://", "postgres://"),
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "SECURE_SSL_REDIRECT": "false",  # TLS ends at the load balancer; the benchmark speaks HTTP
    }
    python = str(ROOT / ".venv" / "bin" / "python")
    sh(python, "manage.py", "migrate", "--noinput", "-v0", cwd=ROOT, env=env)
    token = (
        sh(python, "manage.py", "shell", "-c", BENCH_USER, cwd=ROOT, env=env, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    os.environ["WARDEN_BENCH_TOKEN"] = token
    gunicorn = [str(ROOT / ".venv" / "bin" / "gunicorn"), "config.wsgi", "--workers", str(WORKERS)]
    gunicorn += ["--bind", f"127.0.0.1:{port}"]
    web = Server(gunicorn, {**env, "PYTHONPATH": str(ROOT)}, scratch / "gunicorn.log")
    worker = Server(
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "config",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
        ],
        {**env, "PYTHONPATH": str(ROOT)},
        scratch / "celery.log",
    )
    wait_for(f"http://127.0.0.1:{port}/health")
    return [web, worker], {"server": web.process.pid, "jobs": worker.process.pid}


BENCH_USER = """
from django.contrib.auth.models import Group
from django.contrib.auth import get_user_model
from django.db import transaction
from common.roles import Role
from registry import services
team, _ = Group.objects.get_or_create(name="bench")
role, _ = Group.objects.get_or_create(name=Role.MODEL_DEVELOPER.value)
with transaction.atomic():  # a new user is recorded with its event (audit.accounts)
    user = get_user_model().objects.create_user("bench")
    user.groups.add(team, role)
print(services.token_create(actor=user, name="bench")[1])
"""

SYSTEMS = {
    "mlflow": ("mlflow", start_mlflow, PORTS["mlflow"]),
    "warden-mlflow": ("bench.warden_adapters:WardenMlflow", start_warden, PORTS["warden"]),
    "warden-native": ("bench.warden_adapters:WardenNative", start_warden, PORTS["warden"]),
}


def run_round(system: str, round_no: int, args: argparse.Namespace, stamp: str) -> Path:
    adapter, start, port = SYSTEMS[system]
    scratch = RESULTS / "raw" / f"{stamp}-{system}-r{round_no}"
    scratch.mkdir(parents=True, exist_ok=True)
    dsn = fresh_database(f"bench_{system.replace('-', '_')}")
    servers, pids = start(dsn, scratch)
    out = scratch / "result.json"
    try:
        command = [sys.executable, str(SHARED / "registry_bench.py"), "run", "--adapter", adapter]
        command += ["--base-url", f"http://127.0.0.1:{port}", "--pg-dsn", dsn, "--analyze", "--alias-name", "candidate"]
        command += ["--watch", f"db={postmaster_pid()}", "--out", str(out), "--label", f"{system} round {round_no}"]
        for label, pid in pids.items():
            command += ["--watch", f"{label}={pid}"]
        command += QUICK if args.quick else []
        command += args.bench_args
        if args.floor and round_no == 1 and system == args.systems[0]:
            command += ["--pg-floor-dsn", fresh_database("bench_floor")]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{SHARED}"}
        print(f"\n=== round {round_no}: {system} ===", flush=True)
        sh(*command, cwd=ROOT, env=env)
    finally:
        for server in servers:
            server.stop()
    return out


def table(results: dict[str, list[Path]]) -> str:
    """Median per workload of each system, and Warden's ratios against MLflow."""
    runs = {system: [json.loads(p.read_text())["workloads"] for p in paths] for system, paths in results.items()}

    def key(w: dict) -> tuple:
        return (w["id"], w["threads"], w["store_versions_before"])

    def median_of(system: str, k: tuple, pick) -> float | None:  # type: ignore[no-untyped-def]
        values = [pick(w) for run in runs[system] for w in run if key(w) == k]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def main_op(w: dict) -> dict:
        ops = w.get("main_ops") or [max(w["latency_ms"], key=lambda o: w["latency_ms"][o].get("n", 0))]
        return w["latency_ms"].get(ops[0], {})

    def app_cpu(w: dict) -> float:
        return sum(v for k, v in w["cpu_ms_per_unit"].items() if k in ("server", "jobs"))

    pickers = {
        "units/s": lambda w: w["units_per_s"],
        "p99 ms": lambda w: main_op(w).get("p99"),
        "app CPU ms/unit": app_cpu,
        "SQL stmts/unit": lambda w: (w.get("db") or {}).get("statements_per_op"),
    }
    first = next(iter(runs.values()))[0]
    labels = {key(w): f"{w['id']} {w['label']}" for w in first}
    systems = list(runs)
    header = ["workload", "thr", "store"]
    for name in pickers:
        header += [f"{name} {s}" for s in systems]
    header += [f"throughput {s} / mlflow" for s in systems if s != "mlflow"]
    header += [f"p99 {s} / mlflow" for s in systems if s != "mlflow"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "--:|" * (len(header) - 3)]
    for k, label in labels.items():
        cells = [label, str(k[1]), f"{k[2]:,}"]
        medians = {(n, s): median_of(s, k, pick) for n, pick in pickers.items() for s in systems}
        for name in pickers:
            cells += ["-" if medians[name, s] is None else f"{medians[name, s]:,.1f}" for s in systems]
        for name in ("units/s", "p99 ms"):
            for s in systems:
                if s == "mlflow":
                    continue
                a, b = medians[name, s], medians[name, "mlflow"]
                cells.append("-" if not a or not b else f"{a / b:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a first look")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the raw PostgreSQL floor")
    parser.add_argument("bench_args", nargs="*", help="passed on to registry_bench.py run (after --)")
    args = parser.parse_args()
    ensure_pg_stat_statements()
    stamp = run_stamp()
    results: dict[str, list[Path]] = {system: [] for system in args.systems}
    for round_no in range(1, args.rounds + 1):
        for system in args.systems:
            results[system].append(run_round(system, round_no, args, stamp))
    # A run of some systems or some phases is named so, and cannot overwrite a whole run's table.
    partial = args.bench_args or args.systems != list(SYSTEMS)
    report = RESULTS / f"mlflow-side-by-side-{stamp}{'-quick' if args.quick else ''}{'-partial' if partial else ''}.md"
    body = table(results)
    report.write_text(
        f"# Warden and MLflow side by side, {stamp}\n\n"
        f"`{shlex.join(['bench/mlflow_side_by_side.py', *sys.argv[1:]])}`: "
        f"{', '.join(args.systems)}, alternating, {args.rounds} round(s), each on a fresh database; "
        f"medians across rounds. {WORKERS} server workers each; raw results in `bench/results/raw/`.\n\n{body}\n"
    )
    print(f"\n{body}\n\nwritten to {report}")


if __name__ == "__main__":
    main()
