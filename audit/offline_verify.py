"""Verify a Warden audit export without Warden: ``python -m audit.offline_verify BUNDLE --pubkey KEY``.

BUNDLE is the export's directory or zip. KEY is Warden's Ed25519 verify key, obtained from
Warden's operators by a channel you trust: 64 hex characters, or a file holding them (or a PEM
public key). Give ``--pubkey`` once per key when the signing key was rotated. This module is self-contained on purpose: it needs Python 3.11+ and the
``cryptography`` package only, so an auditor can copy this one file and run it anywhere.

It checks, and names every failure it finds:

- ``manifest.sig`` is a given key's Ed25519 signature of ``manifest.json``;
- the bundle holds exactly the manifest's files, each once, each with the SHA-256 and size it
  states, and nothing else (no other file, no directory);
- every checkpoint in ``checkpoints.jsonl`` is signed by a given key and links to the one
  before it, and the manifest's checkpoint is among them;
- every event: ``entry_hash`` is the SHA-256 of its canonical text, which holds each hashed
  field once, each field equals what that text says (kinds included: ``true`` is not ``1``), ``chain_hash`` is SHA-256(prev_hash ‖ entry_hash), sequence numbers increase and
  timestamps never go back; within each run of consecutive sequence numbers each event links to
  the one before it; an event at a checkpoint's size has that checkpoint's chain hash;
- the exported events with ``proofs.jsonl`` rebuild the signed checkpoint's Merkle root (RFC
  6962 hashing): each event is included in the signed trail;
- the counts and sequence ranges are those the manifest states, and ``events.csv`` holds the
  same events as ``events.jsonl``, in the export's columns, with the formula guard (a leading
  ``'``) on every cell a spreadsheet would run and on no other.

Exit status: 0 verified, 1 the bundle failed a check, 2 the command line or a file is unusable.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import hashlib
import io
import itertools
import json
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

GENESIS = "0" * 64
FORMAT = "warden-audit-export/2"
FILES = ("events.jsonl", "events.csv", "proofs.jsonl", "checkpoints.jsonl", "manifest.json", "manifest.sig")
EXTRA_FIELDS = {"actor_name", "canonical", "entry_hash", "prev_hash", "chain_hash"}
HASHED_FIELDS = {
    *("action", "actor_id", "after", "before", "model_name", "object_id", "object_type", "occurred_at"),
    *("reason", "request_id", "seq", "source_ip"),
}
CSV_COLUMNS = (
    *("seq", "occurred_at", "actor_id", "actor_name", "action", "object_type", "object_id", "model_name"),
    *("before", "after", "reason", "request_id", "source_ip", "entry_hash", "prev_hash", "chain_hash"),
)
# A CSV cell whose text begins with one of these carries one more "'" before it (a spreadsheet
# would run it as a formula otherwise), and no other cell does.
CSV_GUARDED = ("=", "+", "-", "@", "\t", "\r", "'")
# In an events.jsonl line the canonical text follows this, as it is, up to the closing brace.
EVENT_MEMBER = ',"event":'
SHOWN = 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chain_hash(prev_hash: str, entry_hash: str) -> str:
    return sha256(bytes.fromhex(prev_hash) + bytes.fromhex(entry_hash))


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Failed(Exception):
    """The bundle cannot be read far enough to check the rest."""


class Unusable(Exception):
    """The command line, or the bundle as a whole (no such directory, not a zip), cannot be used."""


def rebuild_root(
    size: int, leaves: dict[int, bytes], nodes: dict[tuple[int, int], bytes]
) -> tuple[bytes, set[tuple[int, int]]]:
    """The Merkle root over ``size`` leaves from the ``leaves`` known (index → entry hash) and
    the proof's ``nodes`` ((first index, end index) → hash) for the subtrees without a known
    leaf; also the nodes used. A node is only taken where no known leaf lies beneath it, so a
    proof cannot stand in for the events it should include."""
    indexes = sorted(leaves)
    used: set[tuple[int, int]] = set()

    def subtree(lo: int, hi: int) -> bytes:
        at = bisect.bisect_left(indexes, lo)
        if at == len(indexes) or indexes[at] >= hi:
            if (lo, hi) not in nodes:
                raise Failed(f"proofs.jsonl lacks the node for #{lo + 1}..#{hi}: inclusion cannot be shown")
            used.add((lo, hi))
            return nodes[(lo, hi)]
        if hi - lo == 1:
            return leaf_hash(leaves[lo])
        split = 1 << ((hi - lo - 1).bit_length() - 1)
        return node_hash(subtree(lo, lo + split), subtree(lo + split, hi))

    return subtree(0, size), used


class Bundle:
    """The bundle's files, from a directory or a zip."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.archive = zipfile.ZipFile(path) if path.is_file() else None
        except zipfile.BadZipFile:
            raise Unusable(f"{path}: not a zip file") from None
        if self.archive is None and not path.is_dir():
            raise Unusable(f"{path}: no such directory or zip file")

    def entries(self) -> list[str]:
        """Every entry, as listed: a zip's (a name twice is two entries) or a directory's
        (a subdirectory is one, named with a trailing slash, as in a zip)."""
        if self.archive is not None:
            return [info.filename for info in self.archive.infolist()]
        return sorted(p.name if p.is_file() else f"{p.name}/" for p in self.path.iterdir())

    def names(self) -> set[str]:
        return {name for name in self.entries() if not name.endswith("/")}

    def open(self, name: str) -> IO[bytes]:
        if name not in self.names():
            raise Failed(f"{name} is missing from the bundle")
        return self.archive.open(name) if self.archive is not None else (self.path / name).open("rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def lines(self, name: str) -> Iterator[tuple[int, Any]]:
        for number, line in self.texts(name):
            try:
                yield number, json.loads(line)
            except ValueError:
                raise Failed(f"{name} line {number} is not JSON") from None

    def texts(self, name: str) -> Iterator[tuple[int, str]]:
        with self.open(name) as handle:
            yield from enumerate(io.TextIOWrapper(handle, encoding="utf-8", newline="\n"), start=1)

    def events(self) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        """events.jsonl's records: the fields its ``event`` member states, and those beside it
        (``actor_name`` and the hashes) with, as ``canonical``, the exact text of that member. A
        JSON string holds no bare quote, so the first ``,"event":`` in a line is the member's."""
        for number, line in self.texts("events.jsonl"):
            try:
                record = json.loads(line)
            except ValueError:
                raise Failed(f"events.jsonl line {number} is not JSON") from None
            start, text = line.find(EVENT_MEMBER), line.rstrip("\n")
            canonical = text[start + len(EVENT_MEMBER) : -1] if start > 0 and text.endswith("}") else ""
            if not isinstance(record, dict):
                raise Failed(f"events.jsonl line {number} is not a JSON object")
            event = record.pop("event", None)
            yield number, event if isinstance(event, dict) else {}, {**record, "canonical": canonical}


def public_key(text: str) -> tuple[Ed25519PublicKey, str]:
    """The key and its fingerprint (SHA-256 of the raw 32 bytes, hex, as Warden's key_id)."""
    path = Path(text)
    data = path.read_bytes() if path.is_file() else text.encode()
    try:
        if b"BEGIN PUBLIC KEY" in data:
            key = load_pem_public_key(data)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip()))
    except ValueError as exc:
        raise Unusable(f"--pubkey: expected an Ed25519 public key (64 hex characters or PEM): {exc}") from None
    return key, sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


class Verifier:
    def __init__(self, bundle: Bundle, keys: dict[str, Ed25519PublicKey]):
        self.bundle, self.keys = bundle, keys
        self.failures: list[str] = []
        self.leaves: dict[int, bytes] = {}  # leaf index → entry hash, for the exported events

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def signed(self, key_id: Any, body: bytes, signature: str) -> bool:
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(bytes.fromhex(signature.strip()), body)
        except (InvalidSignature, ValueError):
            return False
        return True

    def run(self) -> dict[str, Any]:
        manifest = self.check_manifest()
        if not self.check_files(manifest):
            return manifest
        checkpoints = self.check_checkpoints(manifest)
        self.check_events(manifest, checkpoints)
        self.check_proofs(manifest)
        self.check_csv()
        return manifest

    def check_manifest(self) -> dict[str, Any]:
        body = self.bundle.read("manifest.json")
        signature = self.bundle.read("manifest.sig").decode("ascii", "replace")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise Failed("manifest.json is not JSON") from None
        if manifest.get("key_id") not in self.keys:
            self.fail(
                f"manifest.json names signing key {manifest.get('key_id')}, not a given key ({', '.join(self.keys)})"
            )
        elif not self.signed(manifest["key_id"], body.removesuffix(b"\n"), signature):
            self.fail("manifest.sig: the manifest is not signed by the given key (or was changed after signing)")
        if manifest.get("format") != FORMAT:
            raise Failed(f"manifest.json: format {manifest.get('format')!r} is not {FORMAT!r}")
        return manifest

    def check_files(self, manifest: dict[str, Any]) -> bool:
        """Whether every file is there to be checked further."""
        expected, present = set(FILES), self.bundle.names()
        entries = self.bundle.entries()
        for name in sorted({name for name in entries if entries.count(name) > 1}):
            self.fail(f"{name}: in the bundle more than once (a reader may show either copy)")
        for name in sorted(set(entries) - expected):
            self.fail(f"{name}: {'a directory' if name.endswith('/') else 'a file'} the manifest does not list")
        for name, stated in sorted(manifest.get("files", {}).items()):
            if name not in present:
                self.fail(f"{name}: listed in the manifest but missing")
                continue
            digest, size = hashlib.sha256(), 0
            with self.bundle.open(name) as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    size += len(block)
            if (digest.hexdigest(), size) != (stated.get("sha256"), stated.get("bytes")):
                self.fail(f"{name}: its SHA-256 or size differs from the manifest's (changed after export)")
        for name in sorted(expected - {"manifest.json", "manifest.sig"} - set(manifest.get("files", {}))):
            self.fail(f"{name}: the manifest does not list it")
        return expected <= present

    def check_checkpoints(self, manifest: dict[str, Any]) -> dict[int, dict[str, Any]]:
        checkpoints: dict[int, dict[str, Any]] = {}
        previous = GENESIS
        for number, line in self.bundle.lines("checkpoints.jsonl"):
            body = json.loads(line["body"])
            size = body.get("size")
            at = f"checkpoints.jsonl line {number} (checkpoint #{size})"
            if not self.signed(line.get("key_id"), line["body"].encode(), line.get("signature", "")):
                self.fail(f"{at}: not signed by a given key")
            if body.get("prev") != previous:
                self.fail(f"{at}: does not link to the checkpoint before it")
            previous = sha256(line["body"].encode())
            checkpoints[size] = body
        stated = manifest.get("checkpoint", {})
        target = checkpoints.get(stated.get("size"))
        if target is None:
            self.fail(f"the manifest's checkpoint #{stated.get('size')} is not in checkpoints.jsonl")
        elif (target["root"], target["chain_hash"]) != (stated.get("root"), stated.get("chain_hash")):
            self.fail(f"the manifest's checkpoint #{stated.get('size')} differs from the signed one")
        return checkpoints

    def check_events(self, manifest: dict[str, Any], checkpoints: dict[int, dict[str, Any]]) -> None:
        size = manifest.get("checkpoint", {}).get("size", 0)
        previous: dict[str, Any] | None = None
        ranges: list[list[int]] = []
        for number, fields, beside in self.bundle.events():
            event = {**fields, **beside}
            seq = event.get("seq")
            at = f"events.jsonl line {number} (#{seq})"
            canonical = event.get("canonical", "")
            if sha256(canonical.encode()) != event.get("entry_hash"):
                self.fail(f"{at}: entry_hash is not the SHA-256 of its canonical text")
            hashed = json.loads(canonical, object_pairs_hook=_once) if canonical else {}
            if set(hashed) != HASHED_FIELDS:
                self.fail(f"{at}: its canonical text does not hold exactly the hashed fields")
            # Two readings of one text, unless something beside the event stands in for a field.
            if set(beside) != EXTRA_FIELDS or fields != hashed:
                self.fail(f"{at}: its fields differ from its canonical text")
            if chain_hash(event["prev_hash"], event["entry_hash"]) != event.get("chain_hash"):
                self.fail(f"{at}: chain_hash is not SHA-256(prev_hash ‖ entry_hash)")
            if not isinstance(seq, int) or not 1 <= seq <= size:
                self.fail(f"{at}: sequence number outside 1..{size}, the signed checkpoint")
                continue
            if previous is not None and seq <= previous["seq"]:
                self.fail(f"{at}: sequence number not after #{previous['seq']}")
                continue
            if previous is not None and event.get("occurred_at", "") < previous.get("occurred_at", ""):
                self.fail(f"{at}: timestamped before #{previous['seq']}")
            linked_to = previous["chain_hash"] if previous is not None and previous["seq"] == seq - 1 else None
            if seq == 1:
                linked_to = GENESIS
            if linked_to is not None and event["prev_hash"] != linked_to:
                self.fail(f"{at}: does not link to #{seq - 1}")
            if seq in checkpoints and checkpoints[seq]["chain_hash"] != event["chain_hash"]:
                self.fail(f"{at}: chain hash differs from the signed checkpoint at #{seq}")
            if ranges and ranges[-1][1] == seq - 1:
                ranges[-1][1] = seq
            else:
                ranges.append([seq, seq])
            self.leaves[seq - 1] = bytes.fromhex(event["entry_hash"])
            previous = event
        if len(self.leaves) != manifest.get("events") or ranges != manifest.get("seq_ranges"):
            self.fail(
                f"events.jsonl holds {len(self.leaves)} events in {len(ranges)} run(s); the manifest states "
                f"{manifest.get('events')} in {len(manifest.get('seq_ranges') or [])}"
            )

    def check_proofs(self, manifest: dict[str, Any]) -> None:
        stated = manifest.get("checkpoint", {})
        size = stated.get("size", 0)
        nodes: dict[tuple[int, int], bytes] = {}
        for _, node in self.bundle.lines("proofs.jsonl"):
            nodes[(node["first"] - 1, node["last"])] = bytes.fromhex(node["hash"])
        if not self.leaves:
            return
        try:
            root, used = rebuild_root(size, self.leaves, nodes)
        except Failed as exc:
            self.fail(str(exc))
            return
        if root.hex() != stated.get("root"):
            self.fail(f"the exported events and proofs.jsonl do not rebuild the root of signed checkpoint #{size}")
        for lo, hi in sorted(set(nodes) - used):
            self.fail(f"proofs.jsonl: node #{lo + 1}..#{hi} is not part of any exported event's proof")

    def check_csv(self) -> None:
        csv.field_size_limit(sys.maxsize)  # a cell holds a whole document, of any size
        with self.bundle.open("events.csv") as handle:
            rows = csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
            header = next(rows, [])
            if header != list(CSV_COLUMNS):
                self.fail(f"events.csv: its columns are not {', '.join(CSV_COLUMNS)}")
                return
            events = ({**fields, **beside} for _, fields, beside in self.bundle.events())
            in_csv = in_jsonl = 0
            for row, event in itertools.zip_longest(rows, events):
                in_csv, in_jsonl = in_csv + (row is not None), in_jsonl + (event is not None)
                if row is None or event is None:
                    continue
                if len(row) != len(CSV_COLUMNS) or not all(
                    _same(cell, event.get(name), name) for name, cell in zip(CSV_COLUMNS, row, strict=True)
                ):
                    self.fail(f"events.csv record {in_csv}: differs from event #{event.get('seq')} in events.jsonl")
        if in_csv != in_jsonl:
            self.fail(f"events.csv holds {in_csv} events, events.jsonl {in_jsonl}")


def _same(cell: str, value: Any, name: str) -> bool:
    """Whether a CSV cell shows ``value``, with the export's formula guard where it belongs and
    nowhere else; JSON documents are compared as documents (the database may space or order
    them its way)."""
    if cell.startswith("'") and cell[1:].startswith(CSV_GUARDED):
        cell = cell[1:]
    elif cell.startswith(CSV_GUARDED):
        return False  # a formula a spreadsheet would run, or a guard on text that needs none
    if value is None:
        return cell == ""
    if name in ("before", "after"):
        if cell == _ENCODE(value):  # as the canonical text writes it, most often
            return True
        try:
            return _equal(json.loads(cell, object_pairs_hook=_once), value)
        except ValueError:  # not JSON, or a key given twice (a reader could take either)
            return False
    return cell == str(value)


def _equal(a: Any, b: Any) -> bool:
    """The same JSON value, kinds included (Python's ``==`` takes ``true`` for ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list):
        return _ENCODE(a) == _ENCODE(b)
    return bool(a == b)


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once: a reader could take either of two."""
    made = dict(pairs)
    if len(made) != len(pairs):
        raise ValueError("a key is given twice in one object")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.offline_verify", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path, help="the export: a directory or a .zip")
    parser.add_argument(
        "--pubkey", required=True, action="append", help="Warden's Ed25519 verify key: hex, or a file (hex or PEM)"
    )
    args = parser.parse_args(argv)
    try:
        keys = {fingerprint: key for key, fingerprint in map(public_key, args.pubkey)}
        bundle = Bundle(args.bundle)
    except Unusable as exc:
        print(f"NOT VERIFIED: {exc}", file=sys.stderr)
        return 2
    verifier = None
    try:
        verifier = Verifier(bundle, keys)
        manifest = verifier.run()
    except (
        *(Failed, AttributeError, KeyError, RecursionError, TypeError, ValueError, csv.Error, OSError, EOFError),
        *(zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError),  # a zip damaged, encrypted or odd
    ) as exc:
        # A file too malformed to read on: what was found before it still counts.
        for failure in (verifier.failures if verifier else [])[:SHOWN]:
            print(failure, file=sys.stderr)
        message = str(exc) if isinstance(exc, Failed) else f"the bundle is malformed: {type(exc).__name__} {exc}"
        print(f"NOT VERIFIED: {message}", file=sys.stderr)
        return 1
    if verifier.failures:
        for failure in verifier.failures[:SHOWN]:
            print(failure, file=sys.stderr)
        if len(verifier.failures) > SHOWN:
            print(f"… and {len(verifier.failures) - SHOWN} more", file=sys.stderr)
        print(f"NOT VERIFIED: {len(verifier.failures)} failure(s)", file=sys.stderr)
        return 1
    ranges = manifest["seq_ranges"]
    span = f"#{ranges[0][0]}..#{ranges[-1][1]} in {len(ranges)} run(s)" if ranges else "none"
    print(
        f"verified: {manifest['events']} events ({span}), each included in signed checkpoint "
        f"#{manifest['checkpoint']['size']} (root {manifest['checkpoint']['root']}); key {manifest['key_id']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
