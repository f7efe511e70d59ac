"""Rows read and written by plain statements whose SQL is written once: one row and the rows its
foreign keys name (``JoinedRow``), a fixed list (``rows``), an insert (``Insert``,
``NumberedInsert``) and an update of some fields (``Update``).

For lookups and writes made on nearly every request (the API token and its user, a model by name
with its owner and team, a version by its model's name and number, an alias move), where building
the ORM's query costs several times what the database does:
``ApiToken.objects.select_related("user").get(key_hash=…)`` takes about 450 µs of CPU here, this
about 100 µs; a version with its model and author (and whether it has lineage), 1,390 µs against
140 µs. The columns come from the models' own fields and the database's converters and adapters
are applied as the ORM applies them, so the instances and rows are the ones the ORM would give or
write. On PostgreSQL each statement is prepared once per connection (``common.statements``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Field, Model

from common import statements

M = TypeVar("M", bound=Model)
_Converters = list[tuple[int, list[Any], Any]]


class JoinedRow(Generic[M]):
    """``JoinedRow(ApiToken, ("user",), ("key_hash",)).get(value)``: the token whose key_hash is
    ``value``, with ``token.user`` already set, or None.

    - ``relations``: foreign keys that cannot be null (inner joins), each set on the instance.
    - ``keys``: the columns compared with ``get``'s values, the row's own (``"pk"``, ``"number"``)
      or a related row's (``"model__name"``, for a relation in ``relations``); they must name at
      most one row.
    - ``flags``: attribute → ``(model, column)``: whether a row of ``model`` points at this one
      through ``column`` (``{"has_parents": (VersionParent, "child")}``), an ``EXISTS`` each.
    - ``extra``: attribute → a function of the connection giving an SQL expression over the
      row (``t0``) and the related rows (``t1``, ``t2``… in the order of ``relations``), set on
      the instance as the database returns it.
    - ``get(…, lock=True)`` also locks the row (not the related rows) as
      ``select_for_update(no_key=True, of=("self",))`` does, where the database can.
    """

    def __init__(
        self,
        model: type[M],
        relations: tuple[str, ...],
        keys: tuple[str, ...],
        *,
        flags: dict[str, tuple[type[Model], str]] | None = None,
        extra: dict[str, Callable[[Any], str]] | None = None,
    ):
        self.model, self.relations, self.keys, self.flags = model, relations, keys, flags or {}
        self.extra = extra or {}
        self._written: dict[tuple[str, bool], tuple[str, _Converters]] = {}  # (alias, lock) → SQL, converters

    @cached_property
    def _parts(self) -> list[tuple[str | None, type[Model], list[Field]]]:
        """(relation, model, its fields) for the row itself (relation None) and each related row."""
        parts: list[tuple[str | None, type[Model], list[Field]]] = [
            (None, self.model, list(self.model._meta.concrete_fields))
        ]
        for name in self.relations:
            link: Any = self.model._meta.get_field(name)
            assert link.many_to_one and not link.null, f"{name}: a foreign key that cannot be null"
            parts.append((name, link.related_model, list(link.related_model._meta.concrete_fields)))
        return parts

    def _column(self, connection: Any, path: str) -> str:
        """``"number"`` → ``t0."number"``; ``"model__name"`` → ``t1."name"``."""
        relation, _, name = path.rpartition("__")
        index = self.relations.index(relation) + 1 if relation else 0
        model = self._parts[index][1]
        field: Any = model._meta.pk if name == "pk" else model._meta.get_field(name)
        return f"t{index}.{connection.ops.quote_name(field.column)}"

    def _sql(self, connection: Any, lock: bool) -> str:
        quote = connection.ops.quote_name
        columns = [f"t{i}.{quote(f.column)}" for i, (_, _, fields) in enumerate(self._parts) for f in fields]
        for model, column in self.flags.values():
            pointer: Any = model._meta.get_field(column)
            columns.append(
                f"EXISTS (SELECT 1 FROM {quote(model._meta.db_table)} f WHERE f.{quote(pointer.column)} = t0.{quote(self.model._meta.pk.column)})"  # type: ignore[union-attr]
            )
        columns += [expression(connection) for expression in self.extra.values()]
        joins = []
        for i, (name, related, _) in enumerate(self._parts[1:], start=1):
            link: Any = self.model._meta.get_field(name)  # type: ignore[arg-type]
            target = link.target_field.column
            joins.append(f"JOIN {quote(related._meta.db_table)} t{i} ON t{i}.{quote(target)} = t0.{quote(link.column)}")
        where = " AND ".join(f"{self._column(connection, key)} = %s" for key in self.keys)
        sql = f"SELECT {', '.join(columns)} FROM {quote(self.model._meta.db_table)} t0 {' '.join(joins)} WHERE {where}"
        if lock and connection.features.has_select_for_no_key_update:  # SQLite locks the database
            sql += " FOR NO KEY UPDATE OF t0"
        return sql

    def _statement(self, using: str, lock: bool) -> tuple[Any, str, _Converters]:
        connection = connections[using]
        if (using, lock) not in self._written:
            fields = [field for _, _, fields in self._parts for field in fields]
            self._written[using, lock] = (self._sql(connection, lock), _converters(connection, fields))
        sql, converters = self._written[using, lock]
        return connection, sql, converters

    def get(self, *keys: Any, lock: bool = False, using: str = "default") -> M | None:
        connection, sql, converters = self._statement(using, lock)
        with connection.cursor() as cursor:
            statements.execute(cursor, sql, keys)
            row = cursor.fetchone()
        return None if row is None else self._instance(row, converters, connection)

    def _instance(self, row: tuple[Any, ...], converters: _Converters, connection: Any) -> M:
        values = _converted(row, converters, connection)
        instance, start = None, 0
        for name, model, fields in self._parts:
            part = model.from_db(connection.alias, [f.attname for f in fields], values[start : start + len(fields)])
            start += len(fields)
            if name is None:
                instance = part
            else:
                setattr(instance, name, part)
        flags_end = start + len(self.flags)
        for flag, value in zip(self.flags, values[start:flags_end], strict=True):
            setattr(instance, flag, bool(value))
        for name, value in zip(self.extra, values[flags_end:], strict=True):
            setattr(instance, name, value)
        return instance  # type: ignore[return-value]


def _converters(connection: Any, fields: list[Field]) -> _Converters:
    """(position, the database's converters, column) for each of ``fields`` that has any."""
    found = []
    for index, field in enumerate(fields):
        column = field.get_col(field.model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            found.append((index, converters, column))
    return found


def _converted(row: tuple[Any, ...], converters: _Converters, connection: Any) -> list[Any]:
    values = list(row)
    for index, functions, column in converters:
        for convert in functions:
            values[index] = convert(values[index], column, connection)
    return values


def rows(
    model: type[M],
    sql: str,
    params: Sequence[Any] = (),
    *,
    fields: Sequence[str] | None = None,
    extra: Sequence[str] = (),
    using: str = "default",
) -> list[M]:
    """Instances of ``model`` from ``sql``, prepared on PostgreSQL: for lists whose SQL is fixed,
    as ``JoinedRow`` is for one row by key. ``sql`` selects ``columns(model, …, fields=fields)``
    (every concrete field by default) and then one column for each name in ``extra``, set on the
    instance as it comes. Fields not selected are deferred, as with ``only()``."""
    connection = connections[using]
    chosen = _chosen(model, fields)
    names = tuple(f.attname for f in chosen)
    if (model, names, using) not in _CONVERTERS:
        _CONVERTERS[model, names, using] = _converters(connection, chosen)
    converters = _CONVERTERS[model, names, using]
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params)
        found = cursor.fetchall()
    width, out = len(names), []
    for row in found:
        instance = model.from_db(using, names, _converted(row[:width], converters, connection))
        for name, value in zip(extra, row[width:], strict=True):
            setattr(instance, name, value)
        out.append(instance)
    return out


_CONVERTERS: dict[tuple[type[Model], tuple[str, ...], str], _Converters] = {}


def columns(model: type[Model], table: str = "t0", using: str = "default", fields: Sequence[str] | None = None) -> str:
    """``t0."id", t0."name", …``: the columns of ``fields`` (attnames; every concrete field by
    default) in the model's order, which is the order ``rows`` reads them in."""
    quote = connections[using].ops.quote_name
    return ", ".join(f"{table}.{quote(field.column)}" for field in _chosen(model, fields))


def _chosen(model: type[Model], fields: Sequence[str] | None) -> list[Any]:
    """The concrete fields named by attname in ``fields`` (all by default), in the model's order:
    ``Model.from_db`` takes a subset's values in that order."""
    every: list[Any] = list(model._meta.concrete_fields)
    if fields is None:
        return every
    unknown = set(fields) - {f.attname for f in every}
    assert not unknown, f"{model.__name__} has no columns {sorted(unknown)}"
    return [f for f in every if f.attname in fields]


class Insert(Generic[M]):
    """``Insert(Message).save(message)``: ``message.save(force_insert=True)`` as one plain
    statement, prepared on PostgreSQL, for rows written on every request of a kind (the ORM's
    insert compiler costs more than the round trip). Fields get their ``pre_save``
    (``auto_now``, ``auto_now_add``) and are adapted for the database as the ORM does; the
    primary key comes back set; no signals are sent.

    ``Insert(RegisteredModel, unique="name")``: insert unless a row with the same value of that
    unique column exists (``ON CONFLICT … DO NOTHING``), and say whether it did: one statement
    where a check and an insert in a savepoint (to survive the race the check loses) take four
    round trips."""

    def __init__(self, model: type[M], *, unique: str | None = None):
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if f is not model._meta.pk]
        self.unique: Any = model._meta.get_field(unique) if unique else None
        self._sql: dict[str, str] = {}

    def _text(self, connection: Any) -> str:
        quote, table = connection.ops.quote_name, connection.ops.quote_name(self.model._meta.db_table)
        columns = ", ".join(quote(f.column) for f in self.fields)
        pk = quote(self.model._meta.pk.column)  # type: ignore[union-attr]
        unless = f" ON CONFLICT ({quote(self.unique.column)}) DO NOTHING" if self.unique else ""
        return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(self.fields))}){unless} RETURNING {pk}"

    def _values(self, instance: M, connection: Any) -> list[Any]:
        return [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in self.fields]

    def _run(self, instance: M, using: str, values: list[Any] | None = None) -> bool:
        connection = connections[using]
        if using not in self._sql:
            self._sql[using] = self._text(connection)
        values = self._values(instance, connection) if values is None else values
        with connection.cursor() as cursor:
            statements.execute(cursor, self._sql[using], values)
            returned = cursor.fetchone()
        if returned is None:  # the unique value was taken
            return False
        instance.pk = returned[0]
        instance._state.adding, instance._state.db = False, using
        return True

    def save(self, instance: M, using: str = "default") -> bool:
        """Insert ``instance``; False (and nothing written) if its ``unique`` value was taken."""
        return self._run(instance, using)


class NumberedInsert(Insert[M]):
    """``NumberedInsert(ModelVersion, "number", within="model", count="last_number").save(version)``:
    insert ``version``, numbered by the caller, and set its model's ``last_number`` to its number,
    in one statement that nobody waits for where it can be: on PostgreSQL, when the caller has
    also taken the row's primary key, it travels with the transaction's next statement or its
    ``COMMIT`` (``statements.send_with_next``), which raises its error if it has one (its first
    run on a connection, which prepares it, and Django's own backend run it at once). Elsewhere
    the row is inserted at once, its primary key coming back set, and then the parent updated.

    The caller holds the parent's lock, under which it read the count it numbered the row from;
    the unique constraint on (parent, number) is the backstop. ``touch=("updated_at",
    "created_at")`` also sets the parent's ``updated_at`` to the new row's ``created_at``. As
    ``Insert``: ``pre_save`` and the database's adaptation apply; no signals are sent."""

    def __init__(self, model: type[M], number: str, *, within: str, count: str, touch: tuple[str, str] | None = None):
        super().__init__(model)
        self.number: Any = model._meta.get_field(number)
        self.within: Any = model._meta.get_field(within)
        parent: Any = self.within.related_model
        self.count: Any = parent._meta.get_field(count)
        self.touch: tuple[Any, Any] | None = (
            (parent._meta.get_field(touch[0]), model._meta.get_field(touch[1])) if touch else None
        )

    def _parent_text(self, connection: Any) -> str:
        parent, quote = self.within.related_model._meta, connection.ops.quote_name
        columns = [self.count, *([self.touch[0]] if self.touch else [])]
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
        return f"UPDATE {quote(parent.db_table)} SET {assignments} WHERE {quote(parent.pk.column)} = %s"

    def _keyed_text(self, connection: Any) -> str:
        """The parent's update and the row's insert, primary key included, as one statement."""
        quote, pk = connection.ops.quote_name, self.model._meta.pk
        columns = ", ".join(quote(f.column) for f in [pk, *self.fields])  # type: ignore[list-item]
        values = ", ".join(["%s"] * (len(self.fields) + 1))
        insert = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) VALUES ({values})"
        return f"WITH parent AS ({self._parent_text(connection)}) {insert}"

    def save(self, instance: M, using: str = "default") -> bool:
        connection, parent_id = connections[using], getattr(instance, self.within.attname)
        values = self._values(instance, connection)
        # The parent takes the row's own values, as adapted for the database.
        parent = [values[self.fields.index(self.number)]]
        parent += [values[self.fields.index(self.touch[1])]] if self.touch else []
        parent.append(parent_id)
        if instance.pk is None or connection.vendor != "postgresql":
            self._run(instance, using, values)
            with connection.cursor() as cursor:
                statements.execute(cursor, self._parent_text(connection), parent)
            return True
        key = f"{using}:keyed"
        if key not in self._sql:
            self._sql[key] = self._keyed_text(connection)
        params = [*parent, instance.pk, *values]
        with connection.cursor() as cursor:
            if not statements.send_with_next(cursor, self._sql[key], params):
                statements.execute(cursor, self._sql[key], params)
        instance._state.adding, instance._state.db = False, using
        return True


class Update(Generic[M]):
    """``Update(Alias, ("version", "updated_by", "updated_at")).save(alias)``:
    ``alias.save(update_fields=[…])`` as one plain statement, prepared on PostgreSQL. Fields get
    their ``pre_save`` (``auto_now``) and the database's adaptation; no signals are sent."""

    def __init__(self, model: type[M], fields: tuple[str, ...]):
        self.model = model
        self.fields: list[Any] = [model._meta.get_field(name) for name in fields]
        self._sql: dict[str, str] = {}

    def save(self, instance: M, using: str = "default") -> None:
        connection = connections[using]
        if using not in self._sql:
            quote = connection.ops.quote_name
            assignments = ", ".join(f"{quote(f.column)} = %s" for f in self.fields)
            pk: Any = self.model._meta.pk
            self._sql[using] = (
                f"UPDATE {quote(self.model._meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"
            )
        values = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in self.fields]
        with connection.cursor() as cursor:
            statements.execute(cursor, self._sql[using], [*values, instance.pk])
