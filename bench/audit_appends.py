"""Audited appends per second next to plain inserts of the same rows, at 1, 4 and 16 writers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_bench .venv/bin/python bench/audit_appends.py \\
        [--seconds 5] [--warmup 2] [--writers 1,4,16] [--rounds 3]

Each audited transaction holds one ``audit_record`` call, as a service write does; each plain
one inserts a row of the same shape into ``bench_plain_event``, a copy of the event table's
columns and defaults with a primary key only: no chain, no triggers, no other index. Both go
through the same driver and Django connection, one row per transaction, at the same number of
writers. Writers are separate processes, each with its own Django setup and connection, since
two cores and the GIL would otherwise measure Python rather than the database.

The database (default ``warden_bench``) is dropped and created afresh on every run, so runs
compare; the harness refuses to drop one it did not create. The two kinds alternate, round after
round over every writer count, and each writer count is reported by its median round (a shared
machine's neighbours move single runs by ±10%). After each audited run the chain is checked for
forks and gaps. Results go to stdout as Markdown and to
``bench/results/audit-appends-<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/warden_bench"
PLAIN_TABLE = "bench_plain_event"
BENCH_USER = "bench-writer"


def main() -> None:
    parser = argparse.ArgumentParser(description="Audited appends per second next to plain inserts of the same rows.")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per configuration (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured time before each (default 2)")
    parser.add_argument("--writers", default="1,4,16", help="writer counts, comma-separated (default 1,4,16)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every writer count (default 3)")
    args = parser.parse_args()
    writer_counts = [int(n) for n in args.writers.split(",")]
    if not 0 < args.seconds <= 10 or not 0 <= args.warmup <= 5 or not 0 < args.rounds <= 5:
        parser.error("keep runs bounded: 0 < --seconds <= 10, 0 <= --warmup <= 5, 0 < --rounds <= 5")

    _configure_environment()
    _recreate_database()
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    _prepare_tables()
    machine = _machine_facts()
    connection.close()

    runs: dict[int, list[dict[str, Any]]] = {writers: [] for writers in writer_counts}
    for round_number in range(1, args.rounds + 1):
        for writers in writer_counts:
            plain = _run("plain", writers, args.seconds, args.warmup)
            audited = _run("audited", writers, args.seconds, args.warmup)
            run = {"writers": writers, "plain": plain, "audited": audited, "ratio": _ratio(audited, plain)}
            runs[writers].append(run | {"chain": _check_chain()})
            print(f"round {round_number}: {_row(runs[writers][-1])}", file=sys.stderr, flush=True)
    configurations = [_median_run(runs[writers]) for writers in writer_counts]
    machine["load_average_after"] = os.getloadavg()

    results: dict[str, Any] = {
        "benchmark": "audit-appends",
        "date": date.today().isoformat(),
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "rounds": args.rounds,
        "machine": machine,
        "configurations": configurations,
        "target": "audited >= 0.5 x plain at every writer count",
        "target_met": all(c["ratio"] >= 0.5 for c in configurations),
        "chain_intact": all(c["chain"]["intact"] for c in configurations),
    }
    markdown = _markdown(results)
    print(markdown)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"audit-appends-{results['date']}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(f"written: {stem}.json, {stem}.md", file=sys.stderr)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose ratio is the median, with every round's ratio, and the chain intact only
    if it was after every round."""
    middle = sorted(runs, key=lambda run: run["ratio"])[len(runs) // 2]
    chain = runs[-1]["chain"] | {"intact": all(run["chain"]["intact"] for run in runs)}
    return middle | {"ratios": [run["ratio"] for run in runs], "chain": chain}


def _configure_environment() -> None:
    """Production-like settings for the parent and, inherited, every writer: DEBUG off (no query
    log), no broker, and the database from DATABASE_URL."""
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "false"
    os.environ["REDIS_URL"] = ""
    os.environ.setdefault("SECRET_KEY", secrets.token_hex(32))


def setup_django() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _server(dbname: str) -> dict[str, Any]:
    from config import env

    settings = env.database("DATABASE_URL", DEFAULT_URL)
    if not settings["ENGINE"].endswith("postgresql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL database")
    return {
        "dbname": dbname,
        "user": settings["USER"] or None,
        "password": settings["PASSWORD"] or None,
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
    }


def _recreate_database() -> None:
    """Drop and create the bench database, so that each run starts from an empty ledger. A
    database that exists but holds no ``bench_plain_event`` table was not made here: refuse."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import psycopg2
    from psycopg2 import sql

    from config import env

    name = env.database("DATABASE_URL", DEFAULT_URL)["NAME"]
    admin = psycopg2.connect(**_server("postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone():
                with psycopg2.connect(**_server(name)) as existing, existing.cursor() as probe:
                    probe.execute("SELECT to_regclass(%s) IS NOT NULL", [PLAIN_TABLE])
                    (ours,) = probe.fetchone() or (False,)
                existing.close()
                if not ours:
                    raise SystemExit(f"database {name!r} exists and was not made by this harness: not dropping it")
                cursor.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()


def _prepare_tables() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    with transaction.atomic():  # a new user is recorded with its event (audit.accounts)
        get_user_model().objects.create_user(username=BENCH_USER)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {PLAIN_TABLE} "
            "(LIKE audit_auditevent INCLUDING DEFAULTS INCLUDING IDENTITY, PRIMARY KEY (id))"
        )


def _machine_facts() -> dict[str, Any]:
    import django
    import psycopg2
    from django.db import connection

    with connection.cursor() as cursor:
        settings = {}
        for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "commit_delay"):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        other_sessions = cursor.fetchone()[0]
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "driver": f"psycopg2 {psycopg2.__version__.split()[0]}",
        "postgresql": settings,
        "other_database_sessions_at_start": other_sessions,
        "load_average_before": os.getloadavg(),
        "shared_machine": "timings taken while other work ran on this 2-core machine",
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _run(kind: str, writers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Start ``writers`` processes, release them together, and add up what they committed."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(writers + 1)
    outbox = context.Queue()
    processes = [
        context.Process(target=_writer, args=(kind, index, seconds, warmup, ready, outbox)) for index in range(writers)
    ]
    for process in processes:
        process.start()
    ready.wait(timeout=120)
    reports = [outbox.get(timeout=seconds + warmup + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [r["error"] for r in reports if r["error"]]
    if errors:
        raise SystemExit(f"{kind} at {writers} writers failed: {errors[0]}")
    latencies = sorted(x for r in reports for x in r["latencies"])
    committed = sum(r["committed"] for r in reports)
    result = {
        "committed": committed,
        "per_second": round(committed / seconds, 1),
        "latency_ms": _percentiles(latencies),
        "commit_ms_mean": _mean_ms([x for r in reports for x in r["commits"]]),
    }
    return result


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    return {
        "p50": round(values[len(values) // 2] * 1000, 3),
        "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 3),
    }


def _mean_ms(values: list[float]) -> float | None:
    return round(statistics.fmean(values) * 1000, 3) if values else None


def _writer(kind: str, index: int, seconds: float, warmup: float, ready: Any, outbox: Any) -> None:
    """One writer: its own Django and connection, transactions back to back until the window
    ends. A transaction counts when ``atomic`` returns inside the measured window: for an audited
    one that is after its commit is durable, since the ledger waits for the flush there.

    Each statement's return time is noted, so that the commit can be timed from the client: from
    the last statement's return (or the transaction's start, when nothing was sent before it) to
    the commit's. An audited transaction's event is sent with its ``COMMIT`` and the wait for the
    WAL flush, in one message (``common.postgresql``), and chained in the commit, so its commit
    time is the whole transaction: the event's insert, the chain head held, and the flush."""
    report: dict[str, Any] = {"committed": 0, "latencies": [], "commits": [], "error": None}
    try:
        setup_django()
        from django.db import connection, transaction

        step = _audited_step(index) if kind == "audited" else _plain_step(index)
        returns: list[float] = []

        def note_return(execute: Callable[..., Any], *args: Any) -> Any:
            try:
                return execute(*args)
            finally:
                returns.append(time.perf_counter())

        connection.ensure_connection()
        ready.wait(timeout=120)
        start = time.perf_counter() + warmup
        end = start + seconds
        with connection.execute_wrapper(note_return):
            n = 0
            while True:
                returns.clear()
                committed: list[float] = []
                began = time.perf_counter()
                with transaction.atomic():
                    # Registered first, so it runs as soon as the commit returns.
                    transaction.on_commit(functools.partial(_note_time, committed))
                    step(n)
                done = time.perf_counter()
                n += 1
                if done >= end:
                    break
                if done >= start:
                    report["committed"] += 1
                    report["latencies"].append(done - began)
                    before_commit = [t for t in returns if t <= committed[0]]
                    report["commits"].append(committed[0] - (before_commit[-1] if before_commit else began))
        connection.close()
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    outbox.put(report)


def _note_time(times: list[float]) -> None:
    times.append(time.perf_counter())


def _payload(index: int, n: int) -> dict[str, Any]:
    """A change of about the size services record: a few fields before and after."""
    return {"state": "validated", "tags": {"team": "credit-risk", "writer": str(index)}, "number": n}


def _audited_step(index: int) -> Callable[[int], None]:
    from django.contrib.auth import get_user_model

    from audit.services import audit_record

    actor = get_user_model().objects.get(username=BENCH_USER)

    def step(n: int) -> None:
        audit_record(
            actor=actor,
            action="version.transitioned",
            object_type="registry.modelversion",
            object_id=f"{index}-{n}",
            model_name="bench",
            before={"state": "submitted"},
            after=_payload(index, n),
            reason="benchmark",
        )

    return step


def _plain_step(index: int) -> Callable[[int], None]:
    """Insert the row ``audit_record`` would write (same columns, values adapted the same way),
    prepared once: the plain peer does no work besides the insert."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from audit import ledger
    from audit.models import AuditEvent

    actor = get_user_model().objects.get(username=BENCH_USER)
    fields = {
        "seq": 1,
        "occurred_at": timezone.now(),
        "actor_id": actor.pk,
        "action": "version.transitioned",
        "object_type": "registry.modelversion",
        "object_id": f"{index}-0",
        "model_name": "bench",
        "before": {"state": "submitted"},
        "after": ledger.plain(_payload(index, 0)),
        "reason": "benchmark",
        "request_id": "",
        "source_ip": None,
    }
    canonical = ledger.canonical(fields)
    entry = ledger.entry_hash(canonical)
    row = AuditEvent(
        **fields,
        actor_name=BENCH_USER,
        canonical=canonical,
        entry_hash=entry,
        prev_hash=ledger.GENESIS,
        chain_hash=ledger.chain_hash(ledger.GENESIS, entry),
    )
    columns = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(getattr(row, f.attname), connection) for f in columns]
    statement = (
        f"INSERT INTO {PLAIN_TABLE} ({', '.join(str(f.column) for f in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )

    def step(n: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(statement, values)

    return step


def _check_chain() -> dict[str, Any]:
    """The whole chain, as stored: no two events claim the same predecessor (a fork), each
    links to the event before it, the sequence runs 1..n without a gap, and the head is at the
    last event."""
    from django.db import connection

    from audit.ledger import GENESIS

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*),
                   count(*) - count(DISTINCT prev_hash),
                   count(*) FILTER (WHERE prev_hash <> expected_prev),
                   count(*) FILTER (WHERE seq <> expected_seq),
                   max(seq)
            FROM (
                SELECT seq, prev_hash,
                       coalesce(lag(chain_hash) OVER w, %s) AS expected_prev,
                       coalesce(lag(seq) OVER w, 0) + 1 AS expected_seq
                FROM audit_auditevent WINDOW w AS (ORDER BY seq)
            ) AS events
            """,
            [GENESIS],
        )
        events, shared_predecessors, broken_links, gaps, last = cursor.fetchone()
        cursor.execute(
            "SELECT h.seq = coalesce(%s, 0) AND h.chain_hash = coalesce("
            "(SELECT chain_hash FROM audit_auditevent WHERE seq = h.seq), %s) FROM audit_chainhead h",
            [last, GENESIS],
        )
        (head_at_last,) = cursor.fetchone()
    connection.close()
    forks = shared_predecessors + broken_links
    return {
        "events": events,
        "forks": forks,
        "gaps": gaps,
        "head_at_last_event": head_at_last,
        "intact": forks == 0 and gaps == 0 and head_at_last,
    }


def _ratio(audited: dict[str, Any], plain: dict[str, Any]) -> float:
    return round(audited["per_second"] / plain["per_second"], 2) if plain["per_second"] else 0.0


def _row(c: dict[str, Any]) -> str:
    plain, audited, chain = c["plain"], c["audited"], c["chain"]
    check = (
        f"{chain['events']} events, {chain['forks']} forks, {chain['gaps']} gaps"
        f"{'' if chain['head_at_last_event'] else ', head not at last event'}"
    )
    return (
        f"| {c['writers']} | {plain['per_second']:,.0f} | {audited['per_second']:,.0f} | {c['ratio']:.2f} "
        f"| {plain['latency_ms']['p50']} / {plain['latency_ms']['p99']} "
        f"| {audited['latency_ms']['p50']} / {audited['latency_ms']['p99']} "
        f"| {plain['commit_ms_mean']} / {audited['commit_ms_mean']} | {check} |"
        + (f" {' / '.join(f'{ratio:.2f}' for ratio in c['ratios'])} |" if "ratios" in c else "")
    )


def _markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    pg = m["postgresql"]
    lines = [
        f"# Audited appends vs plain inserts — {results['date']}",
        "",
        f"{results['seconds']:g} s measured per configuration after {results['warmup_seconds']:g} s of warm-up, "
        f"plain and audited alternating, {results['rounds']} rounds; each row is the round with the median ratio. "
        "One row per transaction; writers are separate processes. Timings taken while other work ran on "
        f"the machine (load average {m['load_average_before'][0]:.2f} before, "
        f"{m['load_average_after'][0]:.2f} after; {m['other_database_sessions_at_start']} other database sessions "
        "at the start).",
        "",
        "| writers | plain tx/s | audited tx/s | audited / plain | plain p50 / p99 ms | audited p50 / p99 ms "
        "| commit, mean ms: plain / audited | chain after the audited runs | ratio by round |",
        "|--:|--:|--:|--:|--:|--:|--:|---|---|",
        *(_row(c) for c in results["configurations"]),
        "",
        f"Target (audited ≥ 0.5 x plain at every writer count): {'met' if results['target_met'] else 'not met'}. "
        f"Chain: {'intact (0 forks, 0 gaps)' if results['chain_intact'] else 'NOT intact'}.",
        "",
        "The commit is timed from the client, from the return of the transaction's last statement (or the "
        "transaction's start) to the return of the commit. An audited transaction is one message: its event, "
        "the COMMIT that chains it (holding the chain head, one transaction at a time, for that part), and "
        "the wait for the WAL flush.",
        "",
        "| machine | |",
        "|---|---|",
        f"| cores | {m['cores']} ({m['cpu']}), {m['memory_gib']} GiB |",
        f"| PostgreSQL | {pg['server_version']}, synchronous_commit={pg['synchronous_commit']}, fsync={pg['fsync']}, "
        f"wal_sync_method={pg['wal_sync_method']}, commit_delay={pg['commit_delay']} |",
        f"| client | Python {m['python']}, Django {m['django']}, {m['driver']}, DEBUG off |",
        f"| kernel | {m['kernel']} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
