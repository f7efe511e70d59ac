"""How fast ``audit.verify.verify()`` checks a large ledger, in rows per second.

Loads N synthetic, valid events into a scratch PostgreSQL database with COPY (the chain computed
with ``audit.ledger``, so it verifies), signs a few checkpoints with ``audit.checkpoints``, then
times the verifier, each run followed by a peer (``PEER``: a plain set-based check standing in
for the one AUDIT.md measured) for a ratio that holds whatever the host's speed. The database
must be empty and disposable: the ledger's tables refuse DELETE, so to start again drop and
recreate it.

    createdb -h 127.0.0.1 -U postgres warden_verifyperf
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_verifyperf .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_verifyperf .venv/bin/python bench/verify_speed.py --load 1000000

Later runs without ``--load`` time the verifier again on what is there (``--reference`` also
times the Python streaming verifier and checks that both report the same findings).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_verifyperf")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from audit import ledger, merkle, signing, triggers, verify  # noqa: E402
from audit.checkpoints import checkpoint_make  # noqa: E402
from audit.models import AuditEvent, Checkpoint  # noqa: E402

STATE = Path(os.environ.get("VERIFY_SPEED_STATE", "/tmp/warden_verify_speed"))
COLUMNS = (
    "seq, occurred_at, actor_name, action, object_type, object_id, model_name, before, after, reason, "
    "request_id, source_ip, canonical, entry_hash, prev_hash, chain_hash, actor_id"
)
ACTIONS = ("model.registered", "model.updated", "version.registered", "version.state_changed", "alias.set")


def configure_keys() -> None:
    """A signing key and a witness directory of the bench's own, kept between runs."""
    STATE.mkdir(parents=True, exist_ok=True)
    key_file = STATE / "signing.key"
    if not key_file.exists():
        key_file.write_text(signing.generate()[0])
    settings.AUDIT_SIGNING_KEY = key_file.read_text().strip()
    settings.AUDIT_VERIFY_KEYS = []
    settings.AUDIT_WITNESS_DIR = str(STATE / f"witness-{connection.settings_dict['NAME']}")


def copy_field(value: Any) -> str:
    if value is None:
        return r"\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def synthetic(seq: int, moment: datetime, actors: list[Any], rng: random.Random) -> dict[str, Any]:
    action = ACTIONS[seq % len(ACTIONS)]
    model = f"model-{seq % 997}"
    if action == "model.registered":
        before = None
        after = {
            "name": model,
            "description": f"Scores applications for product line {seq % 13} ✓",
            "business_purpose": "credit decisions",
            "intended_use": "batch scoring, monthly",
            "limitations": "not for SME lending",
            "restricted": bool(seq % 2),
            "tags": {"line": str(seq % 13), "region": "emea"},
        }
    else:
        before = {"state": "draft", "risk_tier": seq % 4 + 1, "threshold": 0.5}
        after = {"state": "approved", "risk_tier": seq % 4 + 1, "threshold": round(rng.random(), 6)}
    actor = actors[seq % len(actors)]
    return {
        "seq": seq,
        "occurred_at": moment,
        "actor_id": actor.pk if seq % 10 else None,
        "action": action,
        "object_type": "registry.registeredmodel",
        "object_id": str(seq % 997 + 1),
        "model_name": model,
        "before": ledger.plain(before),
        "after": ledger.plain(after),
        "reason": "" if seq % 3 else "periodic review\tapproved",
        "request_id": f"{rng.getrandbits(128):032x}",
        "source_ip": f"10.0.{seq % 250}.{seq % 200 + 1}" if seq % 4 else None,
    }


def moment(seq: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=seq * 7013)


def load(total: int, checkpoints: int, batch: int = 50_000) -> None:
    if AuditEvent.objects.exists():
        raise SystemExit("the scratch database already holds events: drop and recreate it to load again")
    # The trail is made here from its first event: the actors it names are not created as users,
    # whose creation would be events of their own (``audit.accounts``).
    actors = [get_user_model()(pk=1000 + i, username=f"bench{i}") for i in range(8)]
    rng = random.Random(1)
    marks = sorted({total * (i + 1) // checkpoints for i in range(checkpoints)} - {0})
    previous, done, began = ledger.GENESIS, 0, time.perf_counter()
    while done < total:
        upto = min(done + batch, total, next(m for m in marks if m > done))
        buffer = io.StringIO()
        for seq in range(done + 1, upto + 1):
            fields = synthetic(seq, moment(seq), actors, rng)
            canonical = ledger.canonical(fields | {"occurred_at": ledger.format_time(fields["occurred_at"])})
            entry = ledger.entry_hash(canonical)
            chain = ledger.chain_hash(previous, entry)
            actor_name = "system" if fields["actor_id"] is None else actors[seq % len(actors)].username
            row = (
                seq,
                fields["occurred_at"].isoformat(),
                actor_name,
                fields["action"],
                fields["object_type"],
                fields["object_id"],
                fields["model_name"],
                None if fields["before"] is None else ledger.encode(fields["before"]),  # as audit_record stores them
                None if fields["after"] is None else ledger.encode(fields["after"]),
                fields["reason"],
                fields["request_id"],
                fields["source_ip"],
                canonical,
                entry,
                previous,
                chain,
                fields["actor_id"],
            )
            buffer.write("\t".join(copy_field(value) for value in row) + "\n")
            previous = chain
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(f"COPY audit_auditevent ({COLUMNS}) FROM STDIN", buffer)
            with triggers.suspended(connection):
                cursor.execute(
                    "UPDATE audit_chainhead SET seq = %s, chain_hash = %s, occurred_at = %s",
                    [upto, previous, moment(upto)],
                )
        done = upto
        if done in marks:
            checkpoint_make(force=True)
        rate = done / (time.perf_counter() - began)
        print(f"\rloaded {done:,} events ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")


def timed(label: str, rows: int, run: Any) -> tuple[Any, float]:
    """Run and print the rate, with the load average before and after: the machine is shared."""
    load = os.getloadavg()[0]
    began = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - began
    print(f"{label:<30} {seconds:7.2f} s {rows / seconds:>10,.0f} rows/s  (load {load:.1f} → {os.getloadavg()[0]:.1f})")
    return result, seconds


# The peer: a stand-in for the "set-based SQL verification" that ../shared/design/AUDIT.md
# measured at about 365k rows/s on its host (the note gives no query): the plainest such check.
# One statement, in sequence order, checks each row's entry hash and chain hash, its link to the
# row before and its sequence number; nothing else (not the columns, not the checkpoints). Timed
# in the same run as verify(), alternating, so that the ratio holds whatever the host's speed.
PEER = """
SELECT count(*) FROM (
    SELECT encode(sha256(convert_to(canonical, 'UTF8')), 'hex') = entry_hash
           AND encode(sha256(decode(prev_hash, 'hex') || decode(entry_hash, 'hex')), 'hex') = chain_hash
           AND prev_hash = coalesce(lag(chain_hash) OVER w, %s)
           AND seq = coalesce(lag(seq) OVER w, 0) + 1 AS ok
    FROM audit_auditevent
    WINDOW w AS (ORDER BY seq)
) AS checked
WHERE NOT ok
"""


def peer() -> int:
    """The rows the peer finds wrong."""
    with connection.cursor() as cursor:
        cursor.execute(PEER, [ledger.GENESIS])
        return cursor.fetchone()[0]


def wait_for_quiet(below: float, patience: float) -> None:
    """Wait (at most ``patience`` seconds) for the 1-minute load average to drop below ``below``."""
    deadline = time.monotonic() + patience
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", type=int, default=0, help="load this many events first (at most 1,000,000)")
    parser.add_argument("--checkpoints", type=int, default=4, help="signed checkpoints spread over the load")
    parser.add_argument("--repeat", type=int, default=3, help="time verify() this many times")
    parser.add_argument("--parts", action="store_true", help="also time the row query and the Merkle roots alone")
    parser.add_argument("--no-peer", action="store_true", help="do not time the peer (see PEER) after each run")
    parser.add_argument("--reference", action="store_true", help="also time the Python streaming verifier")
    parser.add_argument("--quiet", type=float, default=0, help="first wait for the load average to drop below this")
    options = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("point DATABASE_URL at a scratch PostgreSQL database")
    configure_keys()
    if options.load:
        load(min(options.load, 1_000_000), options.checkpoints)
    rows = AuditEvent.objects.count()
    print(f"{rows:,} events, {os.cpu_count()} cores, database {connection.settings_dict['NAME']}")
    if options.quiet:
        wait_for_quiet(options.quiet, patience=600)
    report, ours, theirs = verify.Report(), [], []
    for _ in range(options.repeat):
        report, seconds = timed("verify()", rows, verify.verify)
        ours.append(seconds)
        if not options.no_peer:
            failing, seconds = timed("peer: hashes and links in SQL", rows, peer)
            assert failing == 0, f"the peer finds {failing} row(s) wrong"
            theirs.append(seconds)
    print(f"code {report.code}, {len(report.findings or [])} finding(s)")
    if theirs:
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"verify() / peer, medians of {options.repeat} alternating runs: {ratio:.2f}x the peer's rows/s")
    if options.parts:
        sizes = sorted(Checkpoint.objects.values_list("size", flat=True))
        with transaction.atomic():
            timed("  set-based query (SQL)", rows, lambda: verify._marked_rows(sizes))
            timed("  Merkle roots (Python)", rows, lambda: merkle.roots(verify._leaves(max(sizes, default=0)), sizes))
    if options.reference:
        reference, _ = timed("Python walk (reference)", rows, lambda: verify.verify(set_based=False))
        assert reference.findings == report.findings, "the two verifiers disagree"
        print("the reference verifier reports the same findings")


if __name__ == "__main__":
    main()
