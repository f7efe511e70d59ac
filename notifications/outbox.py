"""Writing notifications: ``enqueue`` is called by the services inside the transaction of the
change, so the message commits with the change or not at all. After the commit a Celery task
is asked to deliver it; if the broker is down the write still succeeds, and the periodic sweep
(``notifications.tasks.sweep``) delivers whatever is due once work runs again."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from audit import ledger
from common.rows import Insert, columns, rows
from notifications import policies
from notifications.models import Channel, Delivery, Message, Webhook

log = logging.getLogger(__name__)

# Written on every notified change (an alias move, a decision): plain statements, prepared on
# PostgreSQL, where the ORM took longer to build them than the database to run them.
_MESSAGES = Insert(Message)
_ACTIVE_WEBHOOKS = f"SELECT {columns(Webhook)} FROM {Webhook._meta.db_table} t0 WHERE t0.active ORDER BY t0.name"


def enqueue(
    event: str,
    *,
    subject: str,
    body: str = "",
    payload: dict[str, Any],
    model: Any = None,
    to: Iterable[Any] = (),
) -> Message:
    """One message about ``event`` (and ``model``, if it is about one): an email to each user
    of ``to`` (users, or querysets of them) that ``policies.may_email`` allows, and a POST to
    each webhook that ``policies.may_post`` allows. The subject is one line (a line break in a
    mail header is refused by the mailer), whatever the reason or title it quotes."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue runs inside the transaction of the change it tells of")
    now = timezone.now()
    message = Message(
        event=event,
        subject=" ".join(subject.split())[:300],
        body=body or subject,
        payload={"event": event, **ledger.plain(payload)},
        model_name=model.name if model is not None else "",
    )
    _MESSAGES.save(message)
    addresses = sorted({user.email.strip().lower() for user in to if policies.may_email(user, model)})
    deliveries = [
        Delivery(message=message, channel=Channel.EMAIL, address=address, next_attempt_at=now) for address in addresses
    ]
    deliveries += [
        Delivery(message=message, channel=Channel.WEBHOOK, webhook=hook, next_attempt_at=now)
        for hook in rows(Webhook, _ACTIVE_WEBHOOKS)
        if policies.may_post(hook, event, model)
    ]
    Delivery.objects.bulk_create(deliveries)
    ids = [str(delivery.pk) for delivery in deliveries]
    if ids:
        transaction.on_commit(lambda: kick(ids), robust=True)
    return message


def kick(ids: list[str]) -> None:
    """Ask a worker to deliver now. A broker that cannot be reached loses nothing: the rows
    are committed and the sweep picks them up. Without a broker (tasks run in-process) the
    sweep sends them too, so that a slow receiver never holds up the request that wrote them."""
    from notifications.tasks import deliver

    if deliver.app.conf.task_always_eager:
        return
    try:
        deliver.delay(ids)
    except Exception as error:  # the broker is down or unreachable
        log.warning("delivery of %d notification(s) deferred to the sweep: %s", len(ids), error)


def people(*roles: str, team_id: int | None = None, users: Iterable[Any] = ()) -> list[Any]:
    """Active users holding any of ``roles``, members of ``team_id``, and ``users``. Plain SQL,
    prepared on PostgreSQL: asked on every notified change, where the ORM's join through the
    membership table cost more to build than to run."""
    found = list(users)
    conditions: list[str] = []
    params: list[Any] = []
    if roles:
        conditions.append(f"g.name IN ({', '.join(['%s'] * len(roles))})")
        params += [str(role) for role in roles]
    if team_id is not None:
        conditions.append("g.id = %s")
        params.append(team_id)
    if not conditions:
        return found
    user = get_user_model()
    membership = user.groups.through._meta.db_table
    found += rows(
        user,
        f"SELECT {columns(user)} FROM {user._meta.db_table} t0 WHERE t0.is_active AND t0.id IN ("
        f"SELECT m.user_id FROM {membership} m JOIN {Group._meta.db_table} g ON g.id = m.group_id"
        f" WHERE {' OR '.join(conditions)})",
        params,
    )
    return found


def owners(model: Any) -> list[Any]:
    """Who is told about a model: its owner and its team."""
    return people(team_id=model.team_id, users=[model.owner])
