"""Where one request's time goes, in process: the side-by-side workload's requests, against both
of Warden's APIs, through Django's WSGI handler (no HTTP, no gunicorn), on a fresh PostgreSQL
database. Prints CPU ms (of the cheapest of three passes) and SQL statements per request for
each kind; ``--profile KIND`` adds the functions that spent it (cProfile on CPU time, by own time) and
``--sql KIND`` one request's statements.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_profile \\
        .venv/bin/python bench/request_profile.py [--store 4000] [--profile mlflow:write] [--sql native:read]

It drops and re-creates its database, as the bench user of ``mlflow_side_by_side.py`` does.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.update(DEBUG="false", LOG_LEVEL="WARNING", SECURE_SSL_REDIRECT="false", REDIS_URL="")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECRET_KEY", "profile-" + "x" * 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind in a pass")
    parser.add_argument("--store", type=int, default=200, help="versions in the store, ten to a model")
    parser.add_argument("--passes", type=int, default=3, help="passes of each kind; the cheapest is reported")
    parser.add_argument("--profile", action="append", default=[], help="api:kind to profile, e.g. native:read")
    parser.add_argument("--sql", action="append", default=[], help="api:kind whose statements to print, one request's")
    parser.add_argument(
        "--only", action="append", default=[], help="api:kind to time, e.g. mlflow:write (default: all)"
    )
    args = parser.parse_args()
    name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    sys.path.insert(0, str(ROOT / "bench"))
    from mlflow_side_by_side import BENCH_USER

    token = _captured(lambda: exec(BENCH_USER, {}))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    statements, shown = [0], [False]

    def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[0] += 1
        if shown[0]:
            print("   ", sql % tuple(repr(p) for p in params) if params else sql)
        return execute(sql, params, many, context)

    def ok(response: Any) -> Any:
        if response.status_code >= 300:
            raise SystemExit(f"{response.request['PATH_INFO']}: {response.status_code} {response.content[:300]!r}")
        return response.json()

    def post(path: str, body: dict[str, Any]) -> Any:
        return ok(client.post(path, json.dumps(body), content_type="application/json"))

    mlflow, k = "/api/2.0/mlflow", max(args.store // 10, 20)  # the store: k models of ten versions

    def r(i: int) -> str:  # a model of the store, spread as the workload's random picks are
        return f"r{i * 7919 % k}"

    fresh = itertools.count()  # names of models registered while timing
    kinds: dict[str, dict[str, Callable[[int], Any]]] = {
        "mlflow": {
            "register": lambda i: post(f"{mlflow}/registered-models/create", {"name": f"n{next(fresh)}"}),
            "write": lambda i: post(f"{mlflow}/model-versions/create", {"name": f"w{i % 20}", "source": "s3://b/x"}),
            "read": lambda i: ok(
                client.get(f"{mlflow}/model-versions/get", {"name": r(i), "version": str(1 + i % 10)})
            ),
            "search": lambda i: ok(
                client.get(f"{mlflow}/model-versions/search", {"filter": f"name='{r(i)}'", "max_results": "100"})
            ),
            "alias-set": lambda i: post(
                f"{mlflow}/registered-models/alias",
                {"name": f"r{i % 20}", "alias": "candidate", "version": str(1 + i // 20 % 2)},
            ),
            "alias-get": lambda i: ok(
                client.get(f"{mlflow}/registered-models/alias", {"name": f"r{i % 20}", "alias": "candidate"})
            ),
            "list": lambda i: ok(client.get(f"{mlflow}/registered-models/search", {"max_results": "100"})),
        },
        "native": {
            "register": lambda i: post("/api/v1/models/", {"name": f"n{next(fresh)}", "team": "bench"}),
            "write": lambda i: post(f"/api/v1/models/w{i % 20}/versions/", {"artifact_uri": "s3://b/x"}),
            "read": lambda i: ok(client.get(f"/api/v1/models/{r(i)}/versions/{1 + i % 10}/")),
            "search": lambda i: ok(client.get(f"/api/v1/models/{r(i)}/versions/", {"page_size": 100})),
            "alias-set": lambda i: ok(
                client.put(
                    f"/api/v1/models/r{i % 20}/aliases/candidate/",
                    json.dumps({"version": 1 + i // 20 % 2}),
                    content_type="application/json",
                )
            ),
            "alias-get": lambda i: ok(client.get(f"/api/v1/models/r{i % 20}/aliases/candidate/")),
            "list": lambda i: ok(client.get("/api/v1/models/", {"page_size": 100})),
        },
    }
    for name in [f"r{i}" for i in range(k)] + [f"w{i}" for i in range(20)]:
        post(f"{mlflow}/registered-models/create", {"name": name})
    for i in range(k * 10):
        post(f"{mlflow}/model-versions/create", {"name": f"r{i % k}", "source": "s3://b/x"})

    print(f"{'api':8} {'kind':10} {'CPU ms':>7} {'wall ms':>8} {'stmts':>6}")
    with connection.execute_wrapper(count):
        for api, calls in kinds.items():
            for kind, call in calls.items():
                if args.only and f"{api}:{kind}" not in args.only:
                    continue
                for i in range(20):
                    call(i)
                if f"{api}:{kind}" in args.sql:
                    print(f"{api} {kind}: the ORM's statements (not the audit chain's own, on the driver's cursor)")
                    shown[0] = True
                    call(20)
                    shown[0] = False
                profiler = cProfile.Profile(time.process_time) if f"{api}:{kind}" in args.profile else None
                statements[0] = 0
                runs = []  # (CPU, wall) of each pass; the least disturbed pass is reported
                for _ in range(args.passes):
                    cpu, wall = time.process_time(), time.perf_counter()
                    if profiler:
                        profiler.enable()
                    for i in range(args.requests):
                        call(i)
                    if profiler:
                        profiler.disable()
                    runs.append((time.process_time() - cpu, time.perf_counter() - wall))
                cpu, wall = min(runs)
                n = args.requests
                per = statements[0] / n / args.passes
                print(f"{api:8} {kind:10} {cpu / n * 1e3:7.2f} {wall / n * 1e3:8.2f} {per:6.1f}")
                if profiler:
                    pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
                        int(os.environ.get("TOP", "30"))
                    )


def _captured(run: Callable[[], None]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run()
    return out.getvalue().strip().splitlines()[-1]


if __name__ == "__main__":
    main()
