"""Who may do what, outside the models' own rules: the accounts, the groups a user is in (a role
is a group, and so is a team: ``common.roles``) and the flags that give powers (a superuser sees
every model and the whole trail; staff reach the admin; an inactive user signs in nowhere).
Every change to them is recorded in the trail, in its transaction, by whoever is signed in to
the request (``audit.context.actor``), else "system" with the reason the command gives
(``audit.context.origin``), however the ORM makes it:

- a new user (``user.created``, with its flags): the admin's "add user", ``createsuperuser``
  (``audit.management.commands.createsuperuser``), ``User.objects.create_user``;
- memberships, one event each (``membership.added``, ``membership.removed``, about the user):
  the admin's user page, ``user.groups.add``, ``group.user_set.remove``, ``set`` and ``clear``
  on either side, deleting a user or a group;
- the flags of an existing user (``user.flags_changed``, before and after);
- a group's new name (``group.renamed``, about the group): a role is a group's name.

A user created, or flags changed or a group renamed, outside a transaction is refused, since
the event could not go with the change.

On PostgreSQL a bypass guard (``install``) holds the rest, as ``registry.guards`` does for
versions: a user inserted, a membership added, removed or changed, a flag changed, or a group
renamed, by ``bulk_create``, ``update()`` or raw SQL, without an event about the user (or the
group) in the same transaction, fails at commit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save

from audit import context
from audit.services import audit_record
from common.roles import is_team


def _record(action: str, pairs: Iterable[tuple[int, int]]) -> None:
    """One event for each (user id, group id) that joins or leaves, in that order."""
    pairs = sorted(set(pairs))
    if not pairs:
        return
    names = dict(get_user_model().objects.filter(pk__in={u for u, _ in pairs}).values_list("pk", "username"))
    groups = dict(Group.objects.filter(pk__in={g for _, g in pairs}).values_list("pk", "name"))
    actor = context.actor()
    for user_id, group_id in pairs:
        audit_record(
            actor=actor,
            action=action,
            object_type="auth.user",
            object_id=user_id,
            after={
                "user": names[user_id],
                "group": groups[group_id],
                "kind": "team" if is_team(groups[group_id]) else "role",
            },
            reason=context.current().reason,
        )


def _memberships(**where: Any) -> list[tuple[int, int]]:
    return list(get_user_model().groups.through.objects.filter(**where).values_list("user_id", "group_id"))


def _groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """``instance`` is the user (its ``groups`` changed) or, ``reverse``, the group (its
    ``user_set``); ``pk_set`` the other side's ids. Additions are recorded once made (Django
    gives only the new ones); removals before, as the memberships that are there to remove."""
    mine = "group_id" if reverse else "user_id"
    theirs = "user_id" if reverse else "group_id"
    if action == "post_add":
        _record("membership.added", [(i, instance.pk) if reverse else (instance.pk, i) for i in pk_set or ()])
    elif action == "pre_remove":
        _record("membership.removed", _memberships(**{mine: instance.pk, f"{theirs}__in": pk_set or ()}))
    elif action == "pre_clear":
        _record("membership.removed", _memberships(**{mine: instance.pk}))


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _record("membership.removed", _memberships(user_id=instance.pk))


def _group_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _record("membership.removed", _memberships(group_id=instance.pk))


FLAGS = ("is_superuser", "is_staff", "is_active")


def _in_a_transaction(change: str) -> None:
    """A change saved outside a transaction is refused: its event could not go with it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            f"{change} outside a transaction: make the change inside transaction.atomic(), so that its audit "
            "event goes with it"
        )


def _user_saving(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Before a user is saved: a new one only inside a transaction (``_user_created`` records
    it); an existing one's changed flags are recorded."""
    if instance._state.adding:
        _in_a_transaction(f"user {instance.get_username()} created")
        return
    if update_fields is not None and not set(update_fields) & set(FLAGS):
        return  # a sign-in saves last_login alone
    stored = sender.objects.filter(pk=instance.pk).values(*FLAGS).first()
    if stored is None:
        return
    changed = [flag for flag in FLAGS if stored[flag] != getattr(instance, flag)]
    if not changed:
        return
    _in_a_transaction(f"{', '.join(changed)} of {instance.get_username()} changed")
    audit_record(
        actor=context.actor(),
        action="user.flags_changed",
        object_type="auth.user",
        object_id=instance.pk,
        before={"user": instance.get_username()} | {flag: stored[flag] for flag in changed},
        after={"user": instance.get_username()} | {flag: getattr(instance, flag) for flag in changed},
        reason=context.current().reason,
    )


def _user_created(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if created:
        audit_record(
            actor=context.actor(),
            action="user.created",
            object_type="auth.user",
            object_id=instance.pk,
            after={"user": instance.get_username()} | {flag: getattr(instance, flag) for flag in FLAGS},
            reason=context.current().reason,
        )


def _group_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Before an existing group is saved: record a new name. A role is a group's name
    (``common.roles``): renaming one moves every member into or out of a role."""
    if instance.pk is None or (update_fields is not None and "name" not in update_fields):
        return
    stored = sender.objects.filter(pk=instance.pk).values_list("name", flat=True).first()
    if stored is None or stored == instance.name:
        return
    _in_a_transaction(f"group {stored!r} renamed")
    audit_record(
        actor=context.actor(),
        action="group.renamed",
        object_type="auth.group",
        object_id=instance.pk,
        before={"group": stored, "kind": "team" if is_team(stored) else "role"},
        after={"group": instance.name, "kind": "team" if is_team(instance.name) else "role"},
        reason=context.current().reason,
    )


def connect() -> None:
    user = get_user_model()
    m2m_changed.connect(_groups_changed, sender=user.groups.through, dispatch_uid="audit.accounts.groups")
    pre_delete.connect(_user_deleted, sender=user, dispatch_uid="audit.accounts.user")
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid="audit.accounts.group")
    pre_save.connect(_user_saving, sender=user, dispatch_uid="audit.accounts.flags")
    post_save.connect(_user_created, sender=user, dispatch_uid="audit.accounts.user_created")
    pre_save.connect(_group_saved, sender=Group, dispatch_uid="audit.accounts.group_name")


_GUARD = """
CREATE OR REPLACE FUNCTION audit_account_check(about text, changed text, what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT warden_audit_written(about, changed) THEN
        RAISE EXCEPTION 'the % of % % changed without an audit event: change them through Warden (the admin, user.groups)', what, about, changed
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END $$;
CREATE OR REPLACE FUNCTION audit_membership_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN  -- the member who leaves (a removal, or an update's old row)
        PERFORM audit_account_check('auth.user', OLD.{member}::text, 'roles and teams');
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM audit_account_check('auth.user', NEW.{member}::text, 'roles and teams');
    END IF;
    RETURN NULL;
END $$;
-- The columns are compared here, not in the triggers' definitions, which would make them depend
-- on Django's own columns and stop its migrations from altering them.
CREATE OR REPLACE FUNCTION audit_user_flags_require_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_superuser IS DISTINCT FROM NEW.is_superuser OR OLD.is_staff IS DISTINCT FROM NEW.is_staff
       OR OLD.is_active IS DISTINCT FROM NEW.is_active THEN
        PERFORM audit_account_check('auth.user', NEW.{user_pk}::text, 'flags (superuser, staff, active)');
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION audit_user_created_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT warden_audit_written('auth.user', NEW.{user_pk}::text) THEN
        RAISE EXCEPTION 'the user % was created without an audit event: create users through Warden (the admin, manage.py createsuperuser, or the ORM inside a transaction)', NEW.{user_pk}
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION audit_group_name_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.name IS DISTINCT FROM NEW.name THEN
        PERFORM audit_account_check('auth.group', NEW.id::text, 'name (a role is a group''s name)');
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS audit_membership_audited ON {memberships};
CREATE CONSTRAINT TRIGGER audit_membership_audited AFTER INSERT OR UPDATE OR DELETE ON {memberships}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_membership_requires_audit();
ALTER TABLE {memberships} ENABLE ALWAYS TRIGGER audit_membership_audited;

DROP TRIGGER IF EXISTS audit_user_flags_audited ON {users};
CREATE CONSTRAINT TRIGGER audit_user_flags_audited AFTER UPDATE ON {users}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_user_flags_require_audit();
ALTER TABLE {users} ENABLE ALWAYS TRIGGER audit_user_flags_audited;

DROP TRIGGER IF EXISTS audit_user_created_audited ON {users};
CREATE CONSTRAINT TRIGGER audit_user_created_audited AFTER INSERT ON {users}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_user_created_requires_audit();
ALTER TABLE {users} ENABLE ALWAYS TRIGGER audit_user_created_audited;

DROP TRIGGER IF EXISTS audit_group_name_audited ON {groups};
CREATE CONSTRAINT TRIGGER audit_group_name_audited AFTER UPDATE ON {groups}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_group_name_requires_audit();
ALTER TABLE {groups} ENABLE ALWAYS TRIGGER audit_group_name_audited;
"""

_UNGUARD = """
DROP TRIGGER IF EXISTS audit_membership_audited ON {memberships};
DROP TRIGGER IF EXISTS audit_user_flags_audited ON {users};
DROP TRIGGER IF EXISTS audit_user_created_audited ON {users};
DROP TRIGGER IF EXISTS audit_group_name_audited ON {groups};
"""


def _sql(template: str, connection: Any) -> str:
    user = get_user_model()
    through = user.groups.through
    quote = connection.ops.quote_name
    member = next(f for f in through._meta.concrete_fields if f.related_model is user)  # user_id for auth.User
    names = {
        "users": quote(user._meta.db_table),
        "user_pk": quote(user._meta.pk.column),
        "memberships": quote(through._meta.db_table),
        "member": quote(member.column),
        "groups": quote(Group._meta.db_table),
    }
    for name, value in names.items():
        template = template.replace("{" + name + "}", value)
    return template


def install(connection: Any) -> None:
    """Idempotent; PostgreSQL only (SQLite, the embedded mode, has no roles to guard against)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_sql(_GUARD, connection))


def uninstall(connection: Any) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_sql(_UNGUARD, connection))
