"""Exports for auditors and the offline verifier: what an auditor gets, what it proves, and
that every kind of tampering with a bundle is refused with its name."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import subprocess
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client

from audit import export, ledger, merkle, offline_verify, signing, triggers
from audit.models import AuditEvent, Checkpoint
from audit.services import audit_record
from tests.conftest import on_postgres
from tests.factories import make_model, make_version


def run_export(tmp_path: Path, *args: str, name: str = "bundle") -> Path:
    destination = tmp_path / name
    call_command("audit_export", str(destination), *args, stdout=io.StringIO())
    return destination


def offline(bundle: Path, *keys: str) -> tuple[int, str]:
    """The offline verifier's exit status and everything it printed."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = offline_verify.main([str(bundle), *[arg for key in keys for arg in ("--pubkey", key)]])
    return code, out.getvalue()


def selected(path: Path) -> list[dict]:
    """A filtered export's events.jsonl without the record of its own making, which it holds last."""
    *events, own = lines(path)
    assert (own["action"], own["seq"]) == ("audit.exported", AuditEvent.objects.latest("seq").seq)
    return events


def lines(path: Path) -> list[dict]:
    """A JSONL file's records; events.jsonl's with the event's own fields beside actor_name and
    the hashes."""
    return [{**record.pop("event", {}), **record} for record in map(json.loads, path.read_text().splitlines())]


@pytest.fixture
def trail(developer, owner):
    """Two models with versions, by two people: 6 events."""
    scorecard = make_model(developer, name="scorecard")
    pricing = make_model(owner, name="pricing")
    make_version(developer, scorecard)
    make_version(owner, pricing)
    make_version(developer, scorecard)
    make_version(owner, pricing)
    return AuditEvent.objects.count()


def test_the_whole_trail_exports_verifies_offline_and_records_the_export(trail, auditor, signing_key, tmp_path):
    bundle = run_export(tmp_path, "--as", "auditor", "--reason", "annual review")

    code, output = offline(bundle, signing_key)
    assert code == 0, output
    record = AuditEvent.objects.order_by("-seq").first()
    assert output.startswith(f"verified: {trail + 1} events (#1..#{record.seq} in 1 run(s))")
    assert (record.action, record.actor, record.reason) == ("audit.exported", auditor, "annual review")
    assert record.after == {"filters": {}, "format": "warden-audit-export/2"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["export_event"] == record.seq == manifest["checkpoint"]["size"]
    assert Checkpoint.objects.get(size=record.seq).root_hash == manifest["checkpoint"]["root"]
    assert manifest["events"] == trail + 1 and manifest["seq_ranges"] == [[1, record.seq]]
    assert manifest["key_id"] == signing.key_id(signing_key)
    assert (bundle / "proofs.jsonl").read_text() == ""  # every leaf is there: nothing more to prove
    events = lines(bundle / "events.jsonl")
    assert [e["seq"] for e in events] == list(range(1, record.seq + 1))
    assert events[-1]["actor_name"] == "auditor" and events[-1]["action"] == "audit.exported"
    stored = AuditEvent.objects.get(seq=1)
    first = (bundle / "events.jsonl").read_text().splitlines()[0]
    assert first.endswith(f',"event":{stored.canonical}}}') and events[0]["chain_hash"] == stored.chain_hash


def test_a_models_trail_is_proven_event_by_event_against_the_signed_checkpoint(trail, signing_key, tmp_path):
    bundle = run_export(tmp_path, "--model", "scorecard")

    code, output = offline(bundle, signing_key)
    assert code == 0, output
    events = selected(bundle / "events.jsonl")
    assert {e["model_name"] for e in events} == {"scorecard"}
    assert [e["seq"] for e in events] == list(
        AuditEvent.objects.filter(model_name="scorecard").order_by("seq").values_list("seq", flat=True)
    )
    assert lines(bundle / "proofs.jsonl")  # the other model's events are proven absent-but-counted by hashes
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["filters"] == {"model": "scorecard"}
    assert manifest["seq_ranges"] == [[1, 1], [3, 3], [5, 5], [7, 7]]  # and the export's own record, #7


def test_a_models_trail_follows_it_across_a_rename(trail, developer, signing_key, tmp_path):
    from registry import services

    scorecard = make_model(developer, name="scorecard-2")
    make_version(developer, scorecard)
    services.model_rename(actor=developer, model=scorecard, new_name="credit-card")
    make_version(developer, scorecard)

    bundle = run_export(tmp_path, "--model", "credit-card")

    assert offline(bundle, signing_key)[0] == 0
    events = selected(bundle / "events.jsonl")
    assert [(e["action"], e["model_name"]) for e in events] == [
        ("model.registered", "scorecard-2"),
        ("version.created", "scorecard-2"),
        ("model.renamed", "credit-card"),
        ("version.created", "credit-card"),
    ]


def test_filters_by_actor_action_and_time(trail, developer, signing_key, tmp_path):
    by_developer = selected(run_export(tmp_path, "--actor", "dev", name="a") / "events.jsonl")
    assert {e["actor_id"] for e in by_developer} == {developer.pk} and len(by_developer) == 3

    created = selected(run_export(tmp_path, "--action", "version.created", name="b") / "events.jsonl")
    assert [e["action"] for e in created] == ["version.created"] * 4

    third = AuditEvent.objects.get(seq=3).occurred_at
    fifth = AuditEvent.objects.get(seq=5).occurred_at
    window = run_export(tmp_path, "--from", third.isoformat(), "--to", fifth.isoformat(), name="c")
    assert [e["seq"] for e in selected(window / "events.jsonl")] == [3, 4]
    for name in "abc":
        assert offline(tmp_path / name, signing_key)[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actor", "nobody"], "actor: there is no user 'nobody'"),
        (["--from", "2026-02-01T00:00Z", "--to", "2026-01-01T00:00Z"], "occurred_before: must be later than"),
        (["--from", "yesterday"], "--from: expected an ISO 8601 date and time"),
        (["--as", "dev"], "--as: Only auditors and administrators can export the audit trail."),
        (["--from", "2026-02-30T00:00:00Z"], "--from: day is out of range for month"),
        (["--model", "scorcard"], "model: there is no model 'scorcard', now or in the trail"),
    ],
)
def test_bad_filters_are_refused_before_anything_is_written(trail, developer, signing_key, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run_export(tmp_path, *args)
    assert AuditEvent.objects.count() == trail
    assert not (tmp_path / "bundle").exists()


def test_a_file_in_the_way_of_the_destination_is_named_not_a_traceback(trail, signing_key, tmp_path):
    (tmp_path / "bundle").write_text("notes")
    with pytest.raises(CommandError, match="bundle already exists and is not an empty directory"):
        run_export(tmp_path)
    assert AuditEvent.objects.count() == trail


def test_an_export_without_as_says_where_the_command_ran(trail, signing_key, tmp_path):
    run_export(tmp_path)
    record = AuditEvent.objects.get(action="audit.exported")
    assert record.actor_name == "system"
    assert record.reason.startswith("manage.py audit_export, run by ") and " on " in record.reason


def test_without_a_signing_key_nothing_is_exported_or_recorded(trail, settings, tmp_path):
    settings.AUDIT_SIGNING_KEY = ""
    with pytest.raises(CommandError, match=r"no signing key is configured.*audit_keygen"):
        run_export(tmp_path)
    assert AuditEvent.objects.count() == trail


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(developer, signing_key, tmp_path):
    reasons = [
        '=HYPERLINK("http://evil")',
        "+1",
        "-1",
        "@SUM(A1)",
        "\tx",
        "'=quoted",
        "plain",
        'two\nlines, "quotes", \\ and ✓ naïve',
    ]
    for reason in reasons:
        with transaction.atomic():
            audit_record(actor=developer, action="note", object_type="test", object_id="1", reason=reason)
    bundle = run_export(tmp_path)

    with (bundle / "events.csv").open(newline="") as handle:
        cells = [row["reason"] for row in csv.DictReader(handle)][: len(reasons)]
    assert cells == [
        '\'=HYPERLINK("http://evil")',
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "''=quoted",
        "plain",
        reasons[-1],
    ]
    code, output = offline(bundle, signing_key)
    assert code == 0, output  # and the human copy still matches the verified one
    assert offline_verify.CSV_GUARDED == export._NEUTRALISED  # the verifier's own copy, kept in step


@pytest.mark.parametrize(("shown", "reason"), [("=1+2", "=1+2"), ("'plain", "plain")])
def test_a_csv_cell_without_its_formula_guard_or_with_one_it_needs_not_is_refused(
    developer, signing_key, tmp_path, shown, reason
):
    with transaction.atomic():
        audit_record(actor=developer, action="note", object_type="test", object_id="1", reason=reason)
    bundle = run_export(tmp_path)
    path = bundle / "events.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    column = rows[0].index("reason")
    record = next(n for n, row in enumerate(rows) if row[column].removeprefix("'") == reason)
    rows[record][column] = shown
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    path.write_text(out.getvalue())

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert f"events.csv record {record}: differs from event #{rows[record][0]} in events.jsonl" in output


def test_a_zip_bundle_verifies_and_the_verifier_needs_no_django(trail, signing_key, tmp_path):
    bundle = run_export(tmp_path, "--model", "pricing", name="bundle.zip")
    assert zipfile.ZipFile(bundle).namelist() == [
        "events.jsonl",
        "events.csv",
        "proofs.jsonl",
        "checkpoints.jsonl",
        "manifest.json",
        "manifest.sig",
    ]
    key_file = tmp_path / "warden.pub"
    key_file.write_text(signing_key + "\n")
    no_django = (
        "import sys, runpy; sys.modules['django'] = None; runpy.run_module('audit.offline_verify', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", no_django, str(bundle), "--pubkey", str(key_file)],
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("verified: 4 events (#2..#7 in 3 run(s))")  # with the export's own record


# Tampering with a bundle: each is refused, exit status 1, naming what failed.


@pytest.fixture
def bundle(trail, signing_key, tmp_path):
    return run_export(tmp_path, "--model", "scorecard")


def test_a_flipped_byte_is_refused(bundle, signing_key):
    path = bundle / "events.jsonl"
    data = bytearray(path.read_bytes())
    data[data.index(b'"action":"model.registered"') + 12] ^= 0x01  # model.registered → model/registered
    path.write_bytes(bytes(data))

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "events.jsonl: its SHA-256 or size differs from the manifest's (changed after export)" in output
    assert "events.jsonl line 1 (#1): entry_hash is not the SHA-256 of its canonical text" in output


def test_a_field_added_beside_the_event_is_refused(bundle, signing_key):
    path = bundle / "events.jsonl"
    first, *rest = path.read_text().splitlines(keepends=True)
    path.write_text(
        first.replace('{"actor_name":', '{"reason":"approved by the board","actor_name":', 1) + "".join(rest)
    )

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "events.jsonl line 1 (#1): its fields differ from its canonical text" in output
    assert "entry_hash is not the SHA-256" not in output


def test_a_dropped_line_is_refused(bundle, signing_key):
    path = bundle / "events.jsonl"
    kept = path.read_text().splitlines(keepends=True)
    path.write_text("".join(kept[:1] + kept[2:]))

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "events.jsonl: its SHA-256 or size differs from the manifest's" in output
    assert "events.jsonl holds 3 events in 3 run(s); the manifest states 4 in 4" in output
    assert "proofs.jsonl lacks the node for #3..#4: inclusion cannot be shown" in output
    assert "events.csv holds 4 events, events.jsonl 3" in output


def test_an_edited_manifest_is_refused(bundle, signing_key):
    path = bundle / "manifest.json"
    path.write_text(path.read_text().replace('"filters":{"model":"scorecard"}', '"filters":{"model":"pricing"}'))

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "manifest.sig: the manifest is not signed by the given key (or was changed after signing)" in output


def test_a_bundle_signed_by_a_foreign_key_is_refused(trail, signing_key, settings, tmp_path):
    """Someone who made their own key pair can sign whatever they like; the verifier holds
    Warden's key, obtained separately, and refuses the rest."""
    settings.AUDIT_SIGNING_KEY, foreign = signing.generate()
    bundle = run_export(tmp_path, "--model", "scorecard")
    size = json.loads((bundle / "manifest.json").read_text())["checkpoint"]["size"]

    code, output = offline(bundle, signing_key)
    assert code == 1
    foreign_id, own_id = signing.key_id(foreign), signing.key_id(signing_key)
    assert f"manifest.json names signing key {foreign_id}, not a given key ({own_id})" in output
    assert f"checkpoints.jsonl line 1 (checkpoint #{size}): not signed by a given key" in output
    assert offline(bundle, foreign)[0] == 0  # it is the key, and only the key, that says who made it


def test_an_event_rewritten_with_recomputed_hashes_and_manifest_fails_without_the_key(bundle, signing_key):
    """The forger recomputes everything a hash covers but cannot sign: the checkpoint's root and
    the manifest's signature give them away."""
    path = bundle / "events.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    first = records[0]
    first["event"]["reason"] = "nothing to see"
    canonical = json.dumps(first["event"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    first["entry_hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    first["chain_hash"] = offline_verify.chain_hash(first["prev_hash"], first["entry_hash"])
    path.write_text("".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["events.jsonl"] = {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest) + "\n")

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "manifest.sig: the manifest is not signed by the given key" in output
    assert "the exported events and proofs.jsonl do not rebuild the root of signed checkpoint" in output
    assert "events.jsonl: its SHA-256" not in output  # the forger's file hashes are consistent


def test_a_zip_holding_a_file_twice_is_refused(trail, signing_key, tmp_path):
    """A zip may hold two entries of one name; readers differ in which they show, so a forged
    copy placed first could be what an auditor reads while the verifier checks the other."""
    bundle = run_export(tmp_path, "--model", "scorecard", name="bundle.zip")
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(bundle) as original, zipfile.ZipFile(forged, "w") as copy:
        csv_text = original.read("events.csv").decode()
        with pytest.warns(UserWarning, match="Duplicate name"):
            copy.writestr("events.csv", csv_text.replace("model.registered", "model.deleted"))
            for name in original.namelist():
                copy.writestr(name, original.read(name))

    code, output = offline(forged, signing_key)
    assert code == 1
    assert "events.csv: in the bundle more than once (a reader may show either copy)" in output


def test_a_directory_inside_the_bundle_is_refused(bundle, signing_key):
    (bundle / "evidence").mkdir()
    (bundle / "evidence" / "events.csv").write_text("forged\n")

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "evidence/: a directory the manifest does not list" in output


def test_a_csv_without_a_column_is_refused_for_its_content_too(bundle, signing_key):
    path = bundle / "events.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    dropped = rows[0].index("reason")
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([row[:dropped] + row[dropped + 1 :] for row in rows])
    path.write_text(out.getvalue())

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert f"events.csv: its columns are not {', '.join(export.CSV_COLUMNS)}" in output
    assert offline_verify.CSV_COLUMNS == export.CSV_COLUMNS  # the verifier's own copy, kept in step


def test_a_file_too_malformed_to_read_on_still_reports_what_was_found_before_it(bundle, signing_key):
    (bundle / "events.csv").write_text("forged\n")
    (bundle / "checkpoints.jsonl").write_text('{"body": "[1]"}\n')

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "events.csv: its SHA-256 or size differs from the manifest's (changed after export)" in output
    assert output.splitlines()[-1].startswith("NOT VERIFIED: the bundle is malformed: AttributeError")


def test_what_cannot_be_used_at_all_exits_2_saying_so(bundle, signing_key, tmp_path):
    (tmp_path / "not.zip").write_text("plain text")
    assert offline(tmp_path / "absent", signing_key) == (
        2,
        f"NOT VERIFIED: {tmp_path / 'absent'}: no such directory or zip file\n",
    )
    assert offline(tmp_path / "not.zip", signing_key) == (2, f"NOT VERIFIED: {tmp_path / 'not.zip'}: not a zip file\n")
    code, output = offline(bundle, "abc")
    assert (code, output.split(":")[0]) == (2, "NOT VERIFIED")
    assert "--pubkey: expected an Ed25519 public key (64 hex characters or PEM)" in output


def test_an_extra_file_or_a_missing_one_is_refused(bundle, signing_key):
    (bundle / "notes.txt").write_text("trust me")
    (bundle / "proofs.jsonl").unlink()

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "notes.txt: a file the manifest does not list" in output
    assert "proofs.jsonl: listed in the manifest but missing" in output


# The proofs themselves.


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100])
def test_proofs_rebuild_the_root_for_any_selection_and_use_every_node(size):
    rng = random.Random(size)
    entries = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(size)]
    expected = merkle.root([bytes.fromhex(e) for e in entries])
    for density in (0.02, 0.2, 0.5, 0.9, 1.0):
        chosen = {i for i in range(size) if rng.random() < density} or {rng.randrange(size)}
        proof = [json.loads(line) for line in export.proof_nodes((e, i in chosen) for i, e in enumerate(entries))]
        nodes = {(n["first"] - 1, n["last"]): bytes.fromhex(n["hash"]) for n in proof}
        leaves = {i: bytes.fromhex(entries[i]) for i in chosen}
        root, used = offline_verify.rebuild_root(size, leaves, nodes)
        assert root.hex() == expected and used == set(nodes)
        if len(chosen) == 1:  # one event: exactly its RFC 9162 audit path
            assert len(nodes) == len(_audit_path(next(iter(chosen)), size))


def _audit_path(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 section 2.1.3.1, PATH(m, D[n]), as subtree ranges."""
    if size <= 1:
        return []
    split = 1 << ((size - 1).bit_length() - 1)
    if index < split:
        return [*_audit_path(index, split), (split, size)]
    return [*[(lo + split, hi + split) for lo, hi in _audit_path(index - split, size - split)], (0, split)]


def test_the_offline_verifier_knows_the_hashed_fields_the_ledger_hashes():
    """It is one file an auditor copies, so it holds its own list."""
    assert set(ledger.HASHED_FIELDS) == offline_verify.HASHED_FIELDS


def test_a_proof_node_cannot_stand_in_for_an_exported_event():
    entries = [bytes([i]) * 32 for i in range(8)]
    whole = {(0, 8): merkle.leaf_hash(b"")}  # a node claiming to cover the exported leaf
    with pytest.raises(offline_verify.Failed, match=r"lacks the node for #1\.\.#2"):
        offline_verify.rebuild_root(8, {3: entries[3]}, whole)


# The API and the admin.


def test_an_auditor_downloads_a_bundle_from_the_api(api, trail, auditor, signing_key, tmp_path):
    response = api(auditor).post("/api/v1/audit-exports/", {"model": "pricing", "reason": "sample"}, format="json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    record = AuditEvent.objects.order_by("-seq").first()
    assert response["Content-Disposition"] == f'attachment; filename="warden-audit-export-{record.seq:012d}.zip"'
    path = tmp_path / "download.zip"
    path.write_bytes(b"".join(response.streaming_content))
    code, output = offline(path, signing_key)
    assert code == 0, output
    assert (record.actor, record.action, record.reason) == (auditor, "audit.exported", "sample")
    assert record.after["filters"] == {"model": "pricing"}


@pytest.mark.parametrize("who", ["developer", "risk_officer", "validator"])
def test_only_auditors_and_administrators_export(api, trail, signing_key, who, request):
    response = api(request.getfixturevalue(who)).post("/api/v1/audit-exports/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["message"] == "Only auditors and administrators can export the audit trail."
    assert AuditEvent.objects.count() == trail


def test_the_api_names_a_bad_filter(api, trail, auditor, signing_key):
    client = api(auditor)
    response = client.post("/api/v1/audit-exports/", {"colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"colour": ["unknown field, or one that cannot be set here"]}
    response = client.post("/api/v1/audit-exports/", {"occurred_after": "soon"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["occurred_after"]
    later = "2026-01-02T00:00:00Z"
    response = client.post(
        "/api/v1/audit-exports/", {"occurred_after": later, "occurred_before": "2026-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"occurred_before": ["must be later than occurred_after"]}
    assert AuditEvent.objects.count() == trail


def test_the_api_says_when_exports_cannot_be_signed(api, trail, auditor, settings):
    settings.AUDIT_SIGNING_KEY = ""
    response = api(auditor).post("/api/v1/audit-exports/", {}, format="json")
    assert response.status_code == 503
    assert "no signing key is configured" in response.json()["message"]
    assert AuditEvent.objects.count() == trail


def test_an_auditor_exports_selected_events_from_the_admin(trail, auditor, validator, signing_key, tmp_path):
    chosen = list(AuditEvent.objects.filter(model_name="pricing").values_list("pk", flat=True))
    client = Client()
    client.force_login(auditor)
    assert b"Export the selected events as a signed bundle" in client.get("/admin/audit/auditevent/").content

    response = client.post("/admin/audit/auditevent/", {"action": "export_bundle", "_selected_action": chosen})

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    path = tmp_path / "admin.zip"
    path.write_bytes(b"".join(response.streaming_content))
    code, output = offline(path, signing_key)
    assert code == 0, output
    assert output.startswith("verified: 4 events (#2..#7 in 3 run(s))")  # with the export's own record
    record = AuditEvent.objects.order_by("-seq").first()
    assert record.actor == auditor and record.after["filters"]["selection"].startswith("selected in the admin")

    client.force_login(validator)
    assert b"Export the selected events" not in client.get("/admin/audit/auditevent/").content


def test_the_export_checkpoint_reaches_the_witness_directory(
    trail, signing_key, tmp_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        bundle = run_export(tmp_path)
    size = json.loads((bundle / "manifest.json").read_text())["checkpoint"]["size"]
    assert (Path(settings.AUDIT_WITNESS_DIR) / f"checkpoint-{size:012d}.json").exists()


def test_an_export_spans_only_what_its_checkpoint_covers(trail, developer, signing_key, tmp_path):
    begun = export.export_begin(actor=None, selection=export.select())
    make_model(developer, name="later")  # written while the bundle is being made
    manifest = export.write_bundle(begun, tmp_path / "b")
    assert manifest["seq_ranges"] == [[1, begun.record.seq]]
    assert offline(tmp_path / "b", signing_key)[0] == 0
    assert timedelta(0) <= begun.checkpoint.created_at - begun.record.occurred_at < timedelta(minutes=1)


def test_keygen_writes_a_secret_key_file_and_a_key_for_auditors(tmp_path):
    call_command("audit_keygen", "--out", str(tmp_path), stdout=io.StringIO())
    secret, shared = tmp_path / "audit-signing.key", tmp_path / "audit-verify.pub"
    assert secret.stat().st_mode & 0o777 == 0o600
    private = secret.read_text().strip()
    assert (
        signing.public_hex(signing.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private)))
        == shared.read_text().strip()
    )
    with pytest.raises(CommandError, match="exists: a new key would not verify what the old one signed"):
        call_command("audit_keygen", "--out", str(tmp_path), stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_a_column_edited_behind_the_hashes_back_shows_in_the_export(trail, signing_key, tmp_path):
    """The CSV comes from the columns and the JSONL from the hashed text: the verifier's
    comparison of the two exposes an edit that left the hashes alone."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with triggers.suspended(connection):
            cursor.execute("UPDATE audit_auditevent SET reason = 'approved by the board' WHERE seq = 3")
    bundle = run_export(tmp_path, "--model", "scorecard")

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert "events.csv record 2: differs from event #3 in events.jsonl" in output


@pytest.mark.django_db(transaction=True)
def test_an_export_outside_a_transaction_writes_the_csv_alongside_and_verifies(trail, signing_key, tmp_path):
    """Outside a transaction, PostgreSQL writes the CSV on a second connection while the JSONL is
    written: the two files still hold the same events, and the bundle verifies."""
    bundle = run_export(tmp_path)

    code, output = offline(bundle, signing_key)
    assert code == 0, output
    records = list(csv.DictReader((bundle / "events.csv").open(newline="", encoding="utf-8")))
    assert [int(r["seq"]) for r in records] == [e["seq"] for e in lines(bundle / "events.jsonl")]
    assert len(records) == trail + 1


@pytest.mark.django_db(transaction=True)
def test_a_document_column_edited_to_an_equal_looking_value_of_another_kind_shows_in_the_export(
    developer, signing_key, tmp_path
):
    """true and 1 are equal to Python's ==, not to an auditor: the CSV, made from the column,
    must show the document the hashed text holds, kinds included."""
    model = make_model(developer, name="m1")
    with transaction.atomic():
        audit_record(actor=developer, action="model.flagged", obj=model, model_name="m1", after={"flag": True})
    seq = AuditEvent.objects.get(action="model.flagged").seq
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with triggers.suspended(connection):
            cursor.execute("UPDATE audit_auditevent SET after = %s WHERE seq = %s", ['{"flag":1}', seq])
    bundle = run_export(tmp_path, "--model", "m1")

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert f"events.csv record 2: differs from event #{seq} in events.jsonl" in output


@pytest.mark.skipif(
    not on_postgres(), reason="PostgreSQL's export writes a json column as stored; SQLite's re-encodes it"
)
@pytest.mark.django_db(transaction=True)
def test_a_document_column_giving_a_key_twice_shows_in_the_export(developer, signing_key, tmp_path):
    """Read by a program, the last of two keys wins and the value is the hashed one; read by a
    person, the CSV says "approved" first. The verifier takes it for what it is: not the same."""
    model = make_model(developer, name="m1")
    with transaction.atomic():
        audit_record(actor=developer, action="model.flagged", obj=model, model_name="m1", after={"state": "rejected"})
    seq = AuditEvent.objects.get(action="model.flagged").seq
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with triggers.suspended(connection):
            twice = '{"state":"approved","state":"rejected"}'
            cursor.execute("UPDATE audit_auditevent SET after = %s WHERE seq = %s", [twice, seq])
    bundle = run_export(tmp_path, "--model", "m1")

    code, output = offline(bundle, signing_key)
    assert code == 1
    assert f"events.csv record 2: differs from event #{seq} in events.jsonl" in output


def test_a_genuine_bundle_with_a_document_larger_than_the_csv_modules_default_cell_verifies(
    developer, signing_key, tmp_path
):
    model = make_model(developer, name="m1")
    audit_record(actor=developer, action="model.documented", obj=model, model_name="m1", after={"doc": "x" * 200_000})
    code, output = offline(run_export(tmp_path, "--model", "m1"), signing_key)
    assert (code, output.split(":")[0]) == (0, "verified")


def _rezip(source: Path, target: Path, change: Any) -> Path:
    """``source``'s entries written again into ``target``, each passed through ``change``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info, old.read(info))
    data = bytearray(target.read_bytes())
    change(data)
    target.write_bytes(bytes(data))
    return target


def test_a_damaged_or_unreadable_zip_is_refused_naming_it_not_a_traceback(trail, signing_key, tmp_path):
    bundle = run_export(tmp_path, "--model", "pricing", name="bundle.zip")
    with zipfile.ZipFile(bundle) as archive:
        first = archive.infolist()[0]  # events.jsonl, deflated
        start = first.header_offset + 30 + len(first.filename.encode())

    def flip_deflated_bytes(data: bytearray) -> None:
        for at in range(start + 2, start + 7):
            data[at] ^= 0xFF

    def encrypted(data: bytearray) -> None:
        data[first.header_offset + 6] |= 0x01  # the local header's flag: encrypted
        central = data.index(b"PK\x01\x02")
        data[central + 8] |= 0x01

    def unknown_method(data: bytearray) -> None:
        central = data.index(b"PK\x01\x02")
        data[central + 10] = 99
        data[first.header_offset + 8] = 99

    for change in (flip_deflated_bytes, encrypted, unknown_method):
        code, output = offline(_rezip(bundle, tmp_path / f"{change.__name__}.zip", change), signing_key)
        assert code == 1, change.__name__
        assert output.splitlines()[-1].startswith("NOT VERIFIED: the bundle is malformed:"), (change.__name__, output)
        assert "Traceback" not in output


def test_an_event_whose_canonical_text_gives_a_field_twice_is_refused(trail, signing_key, tmp_path):
    """A reader could take either value: a canonical text never holds a key twice. (Without the
    key the bundle could not be re-signed; this is the verifier holding the line on its own.)"""
    verifier = offline_verify.Verifier(offline_verify.Bundle(run_export(tmp_path)), {})
    line = (tmp_path / "bundle" / "events.jsonl").read_text().splitlines()[0]
    doubled = line.replace('"action":"', '"action":"model.deleted","action":"', 1)
    (tmp_path / "bundle" / "events.jsonl").write_text(doubled + "\n")
    with pytest.raises(ValueError, match="a key is given twice in one object"):
        verifier.check_events({"checkpoint": {"size": 100}}, {})
