"""Monitoring ingest and evaluation as the number of monitored deployments grows.

For 10, 100, 1,000 and 10,000 live deployments (versions of a T4 model with a risk officer's
thresholds, deployed to staging), it posts batches of 1,000 observations through the API (in
process: serializers, validation, idempotency, insert, evaluation and the batch's audit event)
spread over up to 1,000 of the deployments, and, as the peer, inserts the same rows with a
plain ``bulk_create``; then it times the periodic evaluation of every deployment. Flat figures
down the table mean the cost per point does not grow with the fleet.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_monbench .venv/bin/python bench/monitoring_speed.py \\
        [--sizes 10,100,1000,10000] [--batches 5]

It drops and re-creates its database (only one it made: it holds ``bench_monitoring_marker``).
Results go to ``results/monitoring-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/warden_monbench"
MARKER = "bench_monitoring_marker"
BATCH = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "false"
    os.environ["REDIS_URL"] = ""
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_hex(32))
    sys.path.insert(0, str(ROOT))
    _recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {MARKER} (made timestamptz DEFAULT now())")
    world = _world()
    rows = []
    for size in sizes:
        grown = _grow(world, size)
        rows.append({"deployments": size, "grow_s": grown, **_measure(world, size, args.batches)})
        print(rows[-1], flush=True)
    _write(rows, args.batches)


def _recreate_database() -> None:
    import psycopg2
    from psycopg2 import sql

    from config import env

    db = env.database("DATABASE_URL", DEFAULT_URL)
    if not db["ENGINE"].endswith("postgresql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL database")
    server = {"user": db["USER"] or None, "host": db["HOST"] or None, "port": db["PORT"] or None}
    admin = psycopg2.connect(dbname="postgres", password=db["PASSWORD"] or None, **server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if cursor.fetchone():
            existing = psycopg2.connect(dbname=db["NAME"], password=db["PASSWORD"] or None, **server)
            with existing.cursor() as probe:
                probe.execute("SELECT to_regclass(%s) IS NOT NULL", [MARKER])
                (ours,) = probe.fetchone() or (False,)
            existing.close()
            if not ours:
                raise SystemExit(f"database {db['NAME']!r} exists and was not made by this harness: not dropping it")
            cursor.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db["NAME"])))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
    admin.close()


def _world() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import transaction

    from common.roles import Role
    from governance import services as governance
    from governance.management.commands.demo_seed import ASSESSMENTS
    from governance.models import Environment
    from monitoring import services
    from registry import services as registry

    User = get_user_model()
    team = Group.objects.create(name="fleet")
    with transaction.atomic():  # a new user is recorded with its event (audit.accounts)
        developer = User.objects.create(username="pipeline")
        risk = User.objects.create(username="risk")
    developer.groups.add(team, Group.objects.get(name=Role.MODEL_DEVELOPER))
    risk.groups.add(Group.objects.get(name=Role.RISK_OFFICER))
    model = registry.model_register(actor=developer, name="fleet-scorer", team=team)
    answers, flags = ASSESSMENTS[4]
    governance.assessment_record(actor=risk, model=model, answers=answers, flags=flags)
    services.thresholds_override(
        actor=risk, model=model, measure="relative_change", warn=0.05, critical=0.10, reason="bench"
    )
    return {"developer": developer, "model": model, "staging": Environment.objects.get(name="staging"), "versions": []}


def _grow(world: dict[str, Any], size: int) -> float:
    from governance import services as governance
    from registry import services as registry

    began = time.perf_counter()
    while len(world["versions"]) < size:
        n = len(world["versions"]) + 1
        version = registry.version_create(
            actor=world["developer"],
            model=world["model"],
            artifact_uri=f"s3://fleet/{n}",
            artifact_sha256=f"{n:064x}",
            metrics={"auc": 0.80},
        )
        governance.deployment_record(actor=world["developer"], version=version, environment=world["staging"])
        world["versions"].append(version)
    return round(time.perf_counter() - began, 1)


def _points(world: dict[str, Any], size: int, batch: int, tag: str) -> list[dict[str, Any]]:
    versions = world["versions"][: min(size, BATCH)]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=batch)
    return [
        {
            "key": f"{tag}-{size}-{batch}-{i}",
            "model": "fleet-scorer",
            "version": versions[i % len(versions)].number,
            "metric": "auc",
            "segment": f"s{i // len(versions)}",
            "value": 0.80 - 0.0001 * (i % 7),
            "window_start": (start + dt.timedelta(minutes=i)).isoformat(),
            "window_end": (start + dt.timedelta(minutes=i + 1)).isoformat(),
        }
        for i in range(BATCH)
    ]


def _measure(world: dict[str, Any], size: int, batches: int) -> dict[str, Any]:
    from rest_framework.test import APIClient

    from monitoring import services
    from monitoring.models import Observation

    client = APIClient()
    client.force_authenticate(world["developer"])
    api, plain = [], []
    for batch in range(batches):
        body = {"observations": _points(world, size, batch, "api")}
        began = time.perf_counter()
        response = client.post("/api/v1/monitoring/observations/", body, format="json")
        api.append(time.perf_counter() - began)
        assert response.status_code == 200 and response.data["stored"] == BATCH, response.data
        by_number = {v.number: v for v in world["versions"]}
        rows = [
            Observation(
                version=by_number[p.pop("version")], batch=uuid.uuid4(), **{k: v for k, v in p.items() if k != "model"}
            )
            for p in _points(world, size, batch, "plain")
        ]
        began = time.perf_counter()
        Observation.objects.bulk_create(rows, batch_size=1000)
        plain.append(time.perf_counter() - began)
    began = time.perf_counter()
    evaluated = services.evaluate_all()
    evaluation = time.perf_counter() - began
    assert evaluated["versions"] == size, evaluated
    api_rate, plain_rate = BATCH / statistics.median(api), BATCH / statistics.median(plain)
    return {
        "api_points_s": round(api_rate),
        "plain_points_s": round(plain_rate),
        "ratio": round(api_rate / plain_rate, 2),
        "api_ms_per_point": round(1000 / api_rate, 3),
        "evaluate_s": round(evaluation, 2),
        "evaluate_ms_per_deployment": round(1000 * evaluation / size, 2),
    }


def _write(rows: list[dict[str, Any]], batches: int) -> None:
    today = dt.date.today().isoformat()
    lines = [
        f"# Monitoring ingest and evaluation — {today}",
        "",
        f"Batches of {BATCH} observations through the API (in process), median of {batches}; the peer is a plain "
        "`bulk_create` of the same rows. Evaluation is the periodic task over every live deployment.",
        "",
        "| deployments | API points/s | plain insert points/s | API / plain | API ms per point "
        "| periodic evaluation s | ms per deployment |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['deployments']:,} | {r['api_points_s']:,} | {r['plain_points_s']:,} | {r['ratio']} "
            f"| {r['api_ms_per_point']} | {r['evaluate_s']} | {r['evaluate_ms_per_deployment']} |"
        )
    out = ROOT / "bench" / "results" / f"monitoring-{today}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
