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
- a group's new name (``group.renamed``, about the group): a role is a group's name;
- Django's model permissions given to or taken from a user or a group, one event each
  (``permission.granted``, ``permission.revoked``, about the holder): the admin's user and group
  pages, ``user.user_permissions``, ``group.permissions``, either side, deleting a holder or a
  permission.

A user created, or flags changed or a group renamed, outside a transaction is refused, since
the event could not go with the change.

On PostgreSQL a bypass guard (``install``) holds the rest, as ``registry.guards`` does for
versions: a user inserted, a membership or a model permission added, removed or changed, a flag
changed, or a group renamed, by ``bulk_create``, ``update()`` or raw SQL, without an event of
its kind about the user (or the group) in the same transaction, fails at commit: another event
about the user does not stand for it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
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
    _record_permissions("permission.revoked", _user_permissions(), _holdings(_user_permissions(), instance.pk))


def _group_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _record("membership.removed", _memberships(group_id=instance.pk))
    _record_permissions("permission.revoked", _group_permissions(), _holdings(_group_permissions(), instance.pk))


# --- Django's model permissions, given to a user or a group ----------------------------------
# Warden's own rules read roles and django-guardian's object permissions, but the admin's pages
# for users and groups read these: "can change user" lets a staff user move anyone into a role.


def _user_permissions() -> Any:
    return get_user_model().user_permissions.through


def _group_permissions() -> Any:
    return Group.permissions.through


def _holder(through: Any) -> str:
    """The field of ``through`` (a user's or a group's permissions) naming who holds them."""
    return next(f.attname for f in through._meta.concrete_fields if f.is_relation and f.related_model is not Permission)


def _holdings(through: Any, holder_id: int) -> list[tuple[int, int]]:
    return list(through.objects.filter(**{_holder(through): holder_id}).values_list(_holder(through), "permission_id"))


def _record_permissions(action: str, through: Any, pairs: Iterable[tuple[int, int]]) -> None:
    """One event for each (holder id, permission id) given or taken away, about the holder."""
    pairs = sorted(set(pairs))
    if not pairs:
        return
    by_user = through is _user_permissions()
    holders = get_user_model() if by_user else Group
    names = dict(
        holders.objects.filter(pk__in={h for h, _ in pairs}).values_list("pk", "username" if by_user else "name")
    )
    labels = {
        p.pk: f"{p.content_type.app_label}.{p.codename}"
        for p in Permission.objects.filter(pk__in={p for _, p in pairs}).select_related("content_type")
    }
    actor = context.actor()
    for holder_id, permission_id in pairs:
        audit_record(
            actor=actor,
            action=action,
            object_type="auth.user" if by_user else "auth.group",
            object_id=holder_id,
            after={"user" if by_user else "group": names[holder_id], "permission": labels[permission_id]},
            reason=context.current().reason,
        )


def _permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """``instance`` is the user or group (its permissions changed) or, ``reverse``, the
    permission (its users or groups); ``pk_set`` the other side's ids."""
    holder = _holder(sender)
    if action == "post_add":
        pairs = [(i, instance.pk) if reverse else (instance.pk, i) for i in pk_set or ()]
        _record_permissions("permission.granted", sender, pairs)
        return
    if action not in ("pre_remove", "pre_clear"):
        return
    rows = sender.objects.filter(**{"permission_id" if reverse else holder: instance.pk})
    if action == "pre_remove":
        rows = rows.filter(**{f"{holder}__in" if reverse else "permission_id__in": pk_set or ()})
    _record_permissions("permission.revoked", sender, rows.values_list(holder, "permission_id"))


def _permission_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A permission deleted (its model's content type gone) is taken from everyone who held it."""
    for through in (_user_permissions(), _group_permissions()):
        holders = through.objects.filter(permission_id=instance.pk).values_list(_holder(through), "permission_id")
        _record_permissions("permission.revoked", through, holders)


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
    it); an existing one's changed flags are recorded, whether the instance was read or built
    with its id (as ``loaddata`` builds it)."""
    if update_fields is not None and not set(update_fields) & set(FLAGS):
        return  # a sign-in saves last_login alone
    stored = None if instance.pk is None else sender.objects.filter(pk=instance.pk).values(*FLAGS).first()
    if stored is None:
        _in_a_transaction(f"user {instance.get_username()} created")
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
    for through in (_user_permissions(), _group_permissions()):
        m2m_changed.connect(_permissions_changed, sender=through, dispatch_uid=f"audit.accounts.{through.__name__}")
    pre_delete.connect(_permission_deleted, sender=Permission, dispatch_uid="audit.accounts.permission")


_GUARD = """
DROP FUNCTION IF EXISTS audit_account_check(text, text, text);
CREATE OR REPLACE FUNCTION audit_account_check(about text, changed text, what text, actions text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT warden_audit_recorded(about, changed, actions) THEN
        RAISE EXCEPTION 'the % of % % changed without an audit event: change them through Warden (the admin, user.groups)', what, about, changed
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END $$;
CREATE OR REPLACE FUNCTION audit_membership_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN  -- the member who leaves (a removal, or an update's old row)
        PERFORM audit_account_check('auth.user', OLD.{member}::text, 'roles and teams', {memberships_changed});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM audit_account_check('auth.user', NEW.{member}::text, 'roles and teams', {memberships_changed});
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION audit_permissions_require_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN  -- the holder who loses it (a revocation, or an update's old row)
        PERFORM audit_account_check(TG_ARGV[0], (to_jsonb(OLD) ->> TG_ARGV[1]), 'permissions', {permissions_changed});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM audit_account_check(TG_ARGV[0], (to_jsonb(NEW) ->> TG_ARGV[1]), 'permissions', {permissions_changed});
    END IF;
    RETURN NULL;
END $$;
-- The columns are compared here, not in the triggers' definitions, which would make them depend
-- on Django's own columns and stop its migrations from altering them.
CREATE OR REPLACE FUNCTION audit_user_flags_require_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_superuser IS DISTINCT FROM NEW.is_superuser OR OLD.is_staff IS DISTINCT FROM NEW.is_staff
       OR OLD.is_active IS DISTINCT FROM NEW.is_active THEN
        PERFORM audit_account_check('auth.user', NEW.{user_pk}::text, 'flags (superuser, staff, active)', ARRAY['user.flags_changed']);
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION audit_user_created_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT warden_audit_recorded('auth.user', NEW.{user_pk}::text, ARRAY['user.created']) THEN
        RAISE EXCEPTION 'the user % was created without an audit event: create users through Warden (the admin, manage.py createsuperuser, or the ORM inside a transaction)', NEW.{user_pk}
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION audit_group_name_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.name IS DISTINCT FROM NEW.name THEN
        PERFORM audit_account_check('auth.group', NEW.id::text, 'name (a role is a group''s name)', ARRAY['group.renamed']);
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

DROP TRIGGER IF EXISTS audit_user_permissions_audited ON {user_permissions};
CREATE CONSTRAINT TRIGGER audit_user_permissions_audited AFTER INSERT OR UPDATE OR DELETE ON {user_permissions}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_permissions_require_audit('auth.user', {holder});
ALTER TABLE {user_permissions} ENABLE ALWAYS TRIGGER audit_user_permissions_audited;

DROP TRIGGER IF EXISTS audit_group_permissions_audited ON {group_permissions};
CREATE CONSTRAINT TRIGGER audit_group_permissions_audited AFTER INSERT OR UPDATE OR DELETE ON {group_permissions}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_permissions_require_audit('auth.group', {group_holder});
ALTER TABLE {group_permissions} ENABLE ALWAYS TRIGGER audit_group_permissions_audited;

DROP TRIGGER IF EXISTS audit_group_name_audited ON {groups};
CREATE CONSTRAINT TRIGGER audit_group_name_audited AFTER UPDATE ON {groups}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_group_name_requires_audit();
ALTER TABLE {groups} ENABLE ALWAYS TRIGGER audit_group_name_audited;
"""

_UNGUARD = """
DROP TRIGGER IF EXISTS audit_membership_audited ON {memberships};
DROP TRIGGER IF EXISTS audit_user_flags_audited ON {users};
DROP TRIGGER IF EXISTS audit_user_created_audited ON {users};
DROP TRIGGER IF EXISTS audit_user_permissions_audited ON {user_permissions};
DROP TRIGGER IF EXISTS audit_group_permissions_audited ON {group_permissions};
DROP TRIGGER IF EXISTS audit_group_name_audited ON {groups};
"""


def _sql(template: str, connection: Any) -> str:
    user = get_user_model()
    through = user.groups.through
    quote = connection.ops.quote_name
    member = next(f for f in through._meta.concrete_fields if f.related_model is user)  # user_id for auth.User
    holder = next(f for f in user.user_permissions.through._meta.concrete_fields if f.related_model is user)
    names = {
        "users": quote(user._meta.db_table),
        "user_pk": quote(user._meta.pk.column),
        "memberships": quote(through._meta.db_table),
        "member": quote(member.column),
        "groups": quote(Group._meta.db_table),
        "user_permissions": quote(user.user_permissions.through._meta.db_table),
        "group_permissions": quote(Group.permissions.through._meta.db_table),
        "holder": f"'{holder.column}'",
        "memberships_changed": "ARRAY['membership.added', 'membership.removed']",
        "permissions_changed": "ARRAY['permission.granted', 'permission.revoked']",
        "group_holder": f"'{Group.permissions.through._meta.get_field('group').column}'",
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
