from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models.fields.json import KeyTransform, KeyTransformFactory

from audit import ledger
from audit.ledger import GENESIS

# An event as people read it, in the API and in exports: who, what, when, why, where from, and
# its place in the chain. (``canonical`` is the hashed text these columns must agree with.)
EVENT_FIELDS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "model_name",
    "before",
    "after",
    "reason",
    "request_id",
    "source_ip",
    "entry_hash",
    "prev_hash",
    "chain_hash",
)


class _CanonicalJSON(models.JSONField):
    """A JSONField whose values go to the database in canonical form (``ledger.encode``)."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if hasattr(value, "as_sql"):
            return value
        return ledger.encode(value)


class _AsJsonb(models.Func):
    """A document column read as ``jsonb`` on PostgreSQL (where ``json`` has no operators), for
    lookups; itself elsewhere. What it is compared with is sent in canonical form, as the column
    holds it (SQLite compares documents as text)."""

    template = "%(expressions)s::jsonb"
    output_field = _CanonicalJSON()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return compiler.compile(self.source_expressions[0])


class Document(_CanonicalJSON):
    """An event's before or after document, stored as its canonical text (``ledger.encode``),
    the very bytes the event's canonical text holds for it. On PostgreSQL the column is ``json``,
    which keeps text as given (``jsonb`` re-spaces and re-orders it), so the verifier rebuilds an
    event's canonical text from its columns and compares the two as text, instead of parsing
    every canonical text to compare values. Lookups (``after__state=…``, ``after__has_key=…``,
    ``after={…}``) read it as ``jsonb`` and work as on any JSONField; ``json`` has no equality,
    so a query that compares whole rows (``distinct()``, ``union()``) must leave the documents out."""

    def db_type(self, connection: Any) -> str | None:
        return "json" if connection.vendor == "postgresql" else super().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or not isinstance(value, str):  # psycopg2 parses json columns itself
            return value
        return super().from_db_value(value, expression, connection)

    def get_transform(self, name: str) -> Any:
        transform = super().get_transform(name)
        if isinstance(transform, KeyTransformFactory):
            return lambda lhs, *args, **kwargs: KeyTransform(name, _AsJsonb(lhs), *args, **kwargs)
        return transform

    def get_lookup(self, name: str) -> Any:
        lookup = super().get_lookup(name)
        return lookup if lookup is None or name == "isnull" else _on_jsonb(lookup)


_ON_JSONB: dict[Any, type[models.Lookup]] = {}


def _on_jsonb(lookup: type[models.Lookup]) -> type[models.Lookup]:
    """``lookup`` with its left side read as ``jsonb`` (``_AsJsonb``), made once per lookup."""
    if lookup not in _ON_JSONB:

        class OnJsonb(lookup):  # type: ignore[valid-type, misc]
            def __init__(self, lhs: Any, rhs: Any) -> None:
                super().__init__(_AsJsonb(lhs), rhs)

        _ON_JSONB[lookup] = OnJsonb
    return _ON_JSONB[lookup]


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("Audit events are append-only: they cannot be updated.")

    def delete(self) -> NoReturn:
        raise TypeError("Audit events are append-only: they cannot be deleted.")


class AuditEvent(models.Model):
    """One recorded change: who, what, when, why, and where from, chained to the event before
    it. Written only by ``audit.services.audit_record``, last, in the transaction of the change
    it records. The database refuses UPDATE, DELETE and TRUNCATE on this table."""

    seq = models.BigIntegerField(unique=True, editable=False, help_text="1, 2, 3… with no gap")
    occurred_at = models.DateTimeField(
        db_index=True, editable=False, help_text="database time, taken under the chain lock"
    )
    # No foreign key constraint in the database: its check would lock the user's row (FOR KEY
    # SHARE) inside every append, under the chain head's lock. The id is in the hashed text, and
    # the ORM still refuses to delete a user the trail names (PROTECT).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        db_constraint=False,
    )
    actor_name = models.CharField(max_length=150, editable=False)
    action = models.CharField(max_length=64, editable=False)
    object_type = models.CharField(max_length=64, editable=False)
    object_id = models.CharField(max_length=64, editable=False)
    model_name = models.CharField(max_length=100, blank=True, editable=False)
    before = Document(null=True, editable=False)
    after = Document(null=True, editable=False)
    reason = models.TextField(blank=True, editable=False)
    request_id = models.CharField(max_length=64, blank=True, editable=False)
    source_ip = models.GenericIPAddressField(null=True, editable=False)
    canonical = models.TextField(editable=False, help_text="the exact text that entry_hash is the SHA-256 of")
    entry_hash = models.CharField(max_length=64, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False, help_text="unique: the chain cannot fork")
    chain_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256(prev_hash ‖ entry_hash)")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        base_manager_name = "objects"  # no plain manager that could update or delete
        # Declared here rather than as db_index / unique on the fields, which on PostgreSQL would
        # add a second, pattern-matching index to each: every index is written under the chain
        # head's lock. ``action`` is searched by prefix as well as by value, which its one
        # pattern index serves on PostgreSQL.
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["model_name"], name="audit_event_model_name"),
            models.Index(fields=["action"], name="audit_event_action", opclasses=["varchar_pattern_ops"]),
        ]
        constraints = [models.UniqueConstraint(fields=["prev_hash"], name="audit_event_prev_hash_unique")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id} by {self.actor_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("Audit events are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("Audit events are append-only: they cannot be deleted.")


class ChainHead(models.Model):
    """The single row every append locks (SELECT … FOR UPDATE): the sequence number, the last
    chain hash and the last timestamp are read and advanced under that lock, so concurrent
    writers queue instead of forking the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    seq = models.BigIntegerField(default=0)
    chain_hash = models.CharField(max_length=64, default=GENESIS)
    occurred_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_is_one_row")]

    def __str__(self) -> str:
        return f"head at #{self.seq}"


class Checkpoint(models.Model):
    """A signed statement of the ledger at one size: the Merkle root over the first ``size``
    entry hashes and the chain hash there, chained to the previous checkpoint. A copy goes to
    a witness directory outside the database. Append-only, like the events."""

    size = models.BigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the previous checkpoint's body")
    body = models.TextField(help_text="the canonical text that is signed")
    signature = models.CharField(max_length=128, help_text="Ed25519 over body, hex")
    key_id = models.CharField(max_length=64, help_text="SHA-256 of the public key, hex")
    frontier = models.JSONField(help_text="the Merkle tree's right edge, to continue from here")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-size"]
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"checkpoint at #{self.size}"
