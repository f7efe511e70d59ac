"""Monitoring writes: observations and distributions in batches, reference distributions,
threshold overrides; and the evaluation that turns a breach into governance
(``governance.services.monitoring_breach``), on arrival and periodically.

A batch is one transaction: every item is validated first (a bad one refuses the batch, naming
its index); the versions and deployments its rows refer to are share-locked; rows whose key is
already stored for their version are skipped (a retry counts once); the series they touch are
evaluated, and the versions, models and findings of any breach locked (in id order, before any
audit event) and handed to governance; one audit event records the batch."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from audit.services import audit_record
from common.errors import Conflict, ValidationFailed
from governance import services as governance
from governance.models import Deployment
from monitoring import measures, policies, thresholds
from monitoring.models import Distribution, Measure, Observation, ThresholdOverride
from registry import services as registry_services
from registry.models import ModelVersion, RegisteredModel, VersionState

log = logging.getLogger(__name__)

MAX_OBSERVATIONS = 5000
MAX_DISTRIBUTIONS = 1000


@dataclass
class Received:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    breaches: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    """One validated observation or distribution, its version resolved."""

    version: ModelVersion
    deployment: Deployment | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Breach:
    version: ModelVersion
    metric: str
    level: str
    measure: str
    value: float
    detail: str
    window_end: datetime


def _act(breaches: Sequence[Breach]) -> list[dict[str, Any]]:
    """Hand the breaches to governance: their versions, models and live monitoring findings
    locked first, in id order, before any audit event (most batches breach nothing and lock
    nothing)."""
    if not breaches:
        return []
    _lock_versions(b.version for b in breaches)
    governance.lock_monitoring_findings([b.version for b in breaches])
    return [_breach(b) for b in breaches]


def _lock_versions(versions: Iterable[ModelVersion]) -> None:
    versions = list(versions)
    if not versions:
        return
    ids = sorted({v.pk for v in versions})
    list(ModelVersion.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk").values_list("pk"))
    model_ids = sorted({v.model_id for v in versions})
    list(
        RegisteredModel.objects.select_for_update(no_key=True).filter(pk__in=model_ids).order_by("pk").values_list("pk")
    )


def _ensure_may_report(actor: Any, items: Sequence[Item]) -> None:
    """Once per model in the batch (who may report depends on the model), not once per item."""
    for version in {item.version.model_id: item.version for item in items}.values():
        policies.can_report(actor, version).ensure()


def _named(versions: Iterable[ModelVersion], most: int = 20) -> dict[str, Any]:
    """How many versions a batch touched, and the first few by name (the event stays small)."""
    names = sorted(f"{v.model.name} v{v.number}" for v in versions)
    return {"count": len(names), "first": names[:most]}


def _record_batch(
    *,
    actor: Any,
    action: str,
    object_type: str,
    batch: uuid.UUID,
    items: Sequence[Item],
    stored: set[tuple[int, str]],
    result: Received,
) -> None:
    """The batch's audit events: one for each model it reported on (so each model's history and
    export hold it), with what of it was stored, its versions and its breaches, and the batch's
    id, which its stored rows carry (``batch``)."""
    by_model: dict[str, list[Item]] = {}
    for item in items:
        by_model.setdefault(item.version.model.name, []).append(item)
    for name, mine in sorted(by_model.items()):
        kept = {(i.version.pk, i.data["key"]) for i in mine} & stored
        if not kept:
            continue
        audit_record(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(batch),
            model_name=name,
            after={
                "batch": str(batch),
                "stored": len(kept),
                "duplicates": len(mine) - len(kept),
                "versions": _named({i.version.pk: i.version for i in mine}.values()),
                "breaches": [b for b in result.breaches if b["model"] == name],
            },
        )


def _at(moment: datetime) -> str:
    """A moment in a finding's or a breach's words: in UTC, and saying so, however it reached
    us (read back from the database, or as the request gave it)."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# A window may end this far ahead of the server's clock (the client's may be fast); later would
# stay the "latest" window for ever and hide what comes after it.
CLOCK_SKEW = timedelta(hours=1)


def _check_window(prefix: str, start: datetime, end: datetime) -> None:
    if end < start:
        raise ValidationFailed.on(f"{prefix}.window_end", "must not be before window_start")
    if end > timezone.now() + CLOCK_SKEW:
        raise ValidationFailed.on(f"{prefix}.window_end", "must not be in the future")


def _hold(items: Sequence[Item], name: str) -> None:
    """Share-lock the versions and deployments the batch's rows refer to, in id order, before
    anything else: the foreign keys are checked at commit, after the batch's audit event has
    taken the ledger's lock, and must not wait then for a writer (retiring a deployment, say)
    who waits for the ledger. Then refuse what reports nothing more, as it stands when locked: a
    decommissioned version, a retired deployment. (These share locks do not hold off a
    decommission or a retirement, which take no-key locks: one that commits after them is not
    seen here, and the rows it no longer takes arrive with it as with any batch just before.)"""
    versions = sorted({item.version.pk for item in items})
    deployments = sorted({item.deployment.pk for item in items if item.deployment is not None})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, state FROM registry_modelversion WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE", [versions]
            )
            states = dict(cursor.fetchall())
            cursor.execute(
                "SELECT id, retired_at IS NOT NULL FROM governance_deployment WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
                [deployments],
            )
            retired = {pk for pk, was_retired in cursor.fetchall() if was_retired}
    else:
        states = dict(ModelVersion.objects.filter(pk__in=versions).values_list("pk", "state"))
        retired = set(
            Deployment.objects.filter(pk__in=deployments, retired_at__isnull=False).values_list("pk", flat=True)
        )
    for index, item in enumerate(items):
        if item.deployment is not None and item.deployment.pk in retired:
            raise ValidationFailed.on(f"{name}[{index}].deployment", "was retired: it reports nothing more")
        if states[item.version.pk] == VersionState.DECOMMISSIONED:
            raise ValidationFailed.on(f"{name}[{index}].version", "is decommissioned: it reports nothing more")


def _new(items: Sequence[Item], model: type[Observation] | type[Distribution]) -> list[Item]:
    """The items whose (version, key) is not stored yet, each key once, in (version, key) order:
    two batches inserting some of the same keys then wait for each other's in one order, never
    in a circle."""
    stored = set(
        model.objects.filter(
            version__in={item.version.pk for item in items}, key__in={item.data["key"] for item in items}
        ).values_list("version_id", "key")
    )
    fresh = []
    for item in items:
        mark = (item.version.pk, item.data["key"])
        if mark not in stored:
            stored.add(mark)
            fresh.append(item)
    return sorted(fresh, key=lambda item: (item.version.pk, item.data["key"]))


def _stored(
    model: type[Observation] | type[Distribution], items: Sequence[Item], batch: uuid.UUID
) -> set[tuple[int, str]]:
    """The (version, key) of the ``items`` this call stored: a concurrent call with the same keys
    may have stored some first (both skip them as conflicts; only the first counts them)."""
    if not items:
        return set()
    stored = model.objects.filter(
        version__in={item.version.pk for item in items}, key__in={item.data["key"] for item in items}, batch=batch
    )
    return set(stored.values_list("version_id", "key"))


@transaction.atomic
def observations_receive(*, actor: Any, items: Sequence[Item]) -> Received:
    if not items:
        raise ValidationFailed.on("observations", "at least one")
    if len(items) > MAX_OBSERVATIONS:
        raise ValidationFailed.on("observations", f"at most {MAX_OBSERVATIONS} in one call")
    _ensure_may_report(actor, items)
    for index, item in enumerate(items):
        _check_window(f"observations[{index}]", item.data["window_start"], item.data["window_end"])
    _hold(items, "observations")
    batch = uuid.uuid4()
    new = _new(items, Observation)
    fresh = [Observation(version=i.version, deployment=i.deployment, batch=batch, **i.data) for i in new]
    Observation.objects.bulk_create(fresh, ignore_conflicts=True, batch_size=1000)
    stored = _stored(Observation, new, batch)
    result = Received(received=len(items), stored=len(stored), duplicates=len(items) - len(stored))
    versions = {o.version_id: o.version for o in fresh}
    windows = [
        (o.version_id, o.deployment_id, o.metric, o.segment, o.value, o.window_end)
        for o in fresh
        if (o.version_id, o.key) in stored
    ]
    result.breaches = _act(_metric_breaches(list(versions.values()), windows))
    _record_batch(
        actor=actor,
        action="monitoring.observations_received",
        object_type="monitoring.observation",
        batch=batch,
        items=items,
        stored=stored,
        result=result,
    )
    return result


def _latest(versions: Sequence[ModelVersion], metrics: set[str]) -> list[tuple[Any, ...]]:
    """The newest window of every series (version, deployment, metric, segment) of ``versions``
    and ``metrics``, in one query: (version id, deployment id, metric, segment, value, window
    end). Each deployment is a series of its own: staging doing well must not hide production."""
    rows = Observation.objects.filter(LIVE, version__in=[v.pk for v in versions], metric__in=metrics)
    series = ("version_id", "deployment_id", "metric", "segment")
    return list(_newest(rows, series).values_list(*series, "value", "window_end"))


# Rows of a deployment still running, or reported by version: a retired deployment's last
# window is judged no more.
LIVE = Q(deployment=None) | Q(deployment__retired_at=None)


def _newest(rows: QuerySet[Any], series: tuple[str, ...]) -> QuerySet[Any]:
    """The newest of ``rows`` (by window end, then id) in each series, a NULL deployment being
    a series too."""
    if connection.vendor == "postgresql":
        return rows.order_by(*series, "-window_end", "-id").distinct(*series)
    newest = Window(
        RowNumber(), partition_by=[F(name) for name in series], order_by=[F("window_end").desc(), F("id").desc()]
    )
    return rows.annotate(newest=newest).filter(newest=1).order_by(*series)


def _metric_breaches(versions: Sequence[ModelVersion], windows: Sequence[tuple[Any, ...]]) -> list[Breach]:
    """``windows`` (as ``_latest`` gives them: a batch's, or each series' newest) against the
    approved baseline (the version's recorded metric) and the thresholds in force; the
    breaches go to governance, those of a metric in time order (``_to_judge``)."""
    by_id = {v.pk: v for v in versions}
    where = _environments({window[1] for window in windows})
    limits_of = thresholds.for_models({v.model for v in versions}, Measure.RELATIVE_CHANGE) if windows else {}
    judged: dict[tuple[int, str], list[Breach]] = {}
    for version_id, deployment_id, metric, segment, value, window_end in windows:
        version = by_id[version_id]
        baseline = (version.metrics or {}).get(metric)
        if not isinstance(baseline, int | float) or isinstance(baseline, bool):
            continue
        limits = limits_of[version.model_id]
        change = measures.relative_change(value, float(baseline))
        if limits is None or change is None:
            continue
        level = measures.level(change, limits.warn, limits.critical)
        label = f"{metric}[{segment}]" if segment else metric
        detail = (
            f"{label} was {value:.4g}{where.get(deployment_id, '')} in the window ending {_at(window_end)}, "
            f"{measures.as_percent(change)} from the approved {baseline:.4g}; "
            f"thresholds {limits.warn:.2%} / {limits.critical:.2%} ({limits.source})"
        )
        breach = Breach(version, label, level, "relative change", change, detail, window_end)
        judged.setdefault((version_id, label), []).append(breach)
    return _to_judge(judged)


def _to_judge(series: dict[Any, list[Breach]]) -> list[Breach]:
    """Of each metric's windows (its deployments' together), in time order: every one that
    reaches a level no earlier one did (a warning, then critical), and the newest if it breaches,
    so a batch of many windows is judged as if they had come one by one (a dip that recovered
    before the batch was sent is not lost), without a finding event for every window."""
    chosen = []
    for windows in series.values():
        windows.sort(key=lambda b: (b.window_end, LEVELS.index(b.level), b.value))
        rising, highest = [], 0
        for breach in windows:
            if LEVELS.index(breach.level) > highest:
                rising.append(breach)
                highest = LEVELS.index(breach.level)
        if not rising or rising[-1] is not windows[-1]:
            rising.append(windows[-1])
        chosen += [b for b in rising if b.level != "ok"]
    return chosen


LEVELS = ("ok", "warn", "critical")


def _environments(deployment_ids: set[int | None]) -> dict[int, str]:
    """Where each deployment runs, as said in a breach's detail (" in production")."""
    ids = {pk for pk in deployment_ids if pk is not None}
    if not ids:
        return {}
    return {
        pk: f" in {name}" for pk, name in Deployment.objects.filter(pk__in=ids).values_list("pk", "environment__name")
    }


def _breach(b: Breach) -> dict[str, Any]:
    finding = governance.monitoring_breach(
        version=b.version,
        metric=b.metric,
        level=b.level,
        measure=b.measure,
        value=b.value,
        detail=b.detail,
        window_end=b.window_end,
    )
    return {
        "model": b.version.model.name,
        "version": b.version.number,
        "metric": b.metric,
        "level": b.level,
        "value": round(b.value, 6),
        "finding": finding.pk if finding else None,
    }


@transaction.atomic
def reference_capture(*, actor: Any, item: Item) -> Distribution:
    """The distribution a version is approved against: part of its content, so captured while
    it is a draft, and frozen with the rest once it is submitted (its approvers judged it)."""
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=item.version.pk)
    )
    policies.can_report(actor, version).ensure()
    registry_services.ensure_content_open(version, "reference")
    _check_bins("", item.data["bins"], item.data["counts"])
    feature = item.data["feature"]
    if Distribution.objects.filter(version=version, feature=feature, reference=True).exists():
        raise Conflict.on("feature", f"version {version.number} already has a reference for {feature!r}")
    if Distribution.objects.filter(version=version, key=item.data["key"]).exists():
        raise Conflict.on("key", "already used for this version")
    try:
        with transaction.atomic():
            reference = Distribution.objects.create(version=version, reference=True, batch=uuid.uuid4(), **item.data)
    except IntegrityError:  # the same reference, captured a moment ago by someone else
        raise Conflict.on("feature", f"version {version.number} already has a reference for {feature!r}") from None
    audit_record(
        actor=actor,
        action="monitoring.reference_captured",
        obj=reference,
        model_name=version.model.name,
        after={"version": version.number, "feature": feature, "bins": reference.bins, "counts": reference.counts},
    )
    return reference


def _check_bins(prefix: str, bins: list[Any], counts: list[Any]) -> None:
    """``prefix``: where the row sits in the request (``distributions[3]``), or "" for a body
    that is the row."""
    field = f"{prefix}.counts" if prefix else "counts"
    if len(bins) != len(counts) or not counts:
        raise ValidationFailed.on(field, "one count per bin, at least one bin")
    if any(c < 0 for c in counts) or not 0 < sum(counts) < math.inf:
        raise ValidationFailed.on(field, "counts are not negative, not all zero, and sum to a number")


@transaction.atomic
def distributions_receive(*, actor: Any, items: Sequence[Item]) -> Received:
    if not items:
        raise ValidationFailed.on("distributions", "at least one")
    if len(items) > MAX_DISTRIBUTIONS:
        raise ValidationFailed.on("distributions", f"at most {MAX_DISTRIBUTIONS} in one call")
    references = {
        (d.version_id, d.feature): d
        for d in Distribution.objects.filter(
            reference=True, version__in={i.version.pk for i in items}, feature__in={i.data["feature"] for i in items}
        )
    }
    _ensure_may_report(actor, items)
    for index, item in enumerate(items):
        prefix = f"distributions[{index}]"
        _check_window(prefix, item.data["window_start"], item.data["window_end"])
        _check_bins(prefix, item.data["bins"], item.data["counts"])
        reference = references.get((item.version.pk, item.data["feature"]))
        if reference is None:
            raise ValidationFailed.on(f"{prefix}.feature", f"no reference distribution of {item.data['feature']!r}")
        if reference.bins != item.data["bins"]:
            raise ValidationFailed.on(f"{prefix}.bins", "must be the reference's bins")
    _hold(items, "distributions")
    batch = uuid.uuid4()
    new = _new(items, Distribution)
    fresh = [
        Distribution(
            version=i.version,
            deployment=i.deployment,
            batch=batch,
            psi=measures.psi(references[(i.version.pk, i.data["feature"])].counts, i.data["counts"]),
            **i.data,
        )
        for i in new
    ]
    Distribution.objects.bulk_create(fresh, ignore_conflicts=True)
    stored = _stored(Distribution, new, batch)
    result = Received(received=len(items), stored=len(stored), duplicates=len(items) - len(stored))
    versions = {d.version_id: d.version for d in fresh}
    windows = [
        (d.version_id, d.deployment_id, d.feature, d.psi, d.window_end)
        for d in fresh
        if (d.version_id, d.key) in stored
    ]
    result.breaches = _act(_distribution_breaches(list(versions.values()), windows))
    _record_batch(
        actor=actor,
        action="monitoring.distributions_received",
        object_type="monitoring.distribution",
        batch=batch,
        items=items,
        stored=stored,
        result=result,
    )
    return result


def _distribution_breaches(versions: Sequence[ModelVersion], windows: Sequence[tuple[Any, ...]]) -> list[Breach]:
    """``windows`` (version id, deployment id, feature, PSI, window end: a batch's, or each
    series' newest, ``_latest_distributions``) against the PSI thresholds in force, one lookup
    of them for the batch (``thresholds.for_models``); judged as ``_to_judge`` says."""
    by_id = {v.pk: v for v in versions}
    where = _environments({window[1] for window in windows})
    limits_of = thresholds.for_models({v.model for v in versions}, Measure.PSI) if windows else {}
    judged: dict[tuple[int, str], list[Breach]] = {}
    for version_id, deployment_id, feature, psi, window_end in windows:
        version = by_id[version_id]
        limits = limits_of[version.model_id]
        if psi is None or limits is None or window_end is None:
            continue
        level = measures.level(psi, limits.warn, limits.critical)
        detail = (
            f"PSI of {feature} was {psi:.3f}{where.get(deployment_id, '')} in the window ending "
            f"{_at(window_end)}; thresholds {limits.warn} / {limits.critical} ({limits.source})"
        )
        breach = Breach(version, f"psi:{feature}", level, "PSI", psi, detail, window_end)
        judged.setdefault((version_id, breach.metric), []).append(breach)
    return _to_judge(judged)


def _latest_distributions(versions: Sequence[ModelVersion], features: set[str]) -> list[tuple[Any, ...]]:
    """The newest observed distribution of every (version, deployment, feature), in one query."""
    rows = Distribution.objects.filter(
        LIVE, version__in=[v.pk for v in versions], feature__in=features, reference=False
    )
    series = ("version_id", "deployment_id", "feature")
    return list(_newest(rows, series).values_list(*series, "psi", "window_end"))


@transaction.atomic
def thresholds_override(
    *, actor: Any, model: RegisteredModel, measure: str, warn: float, critical: float, reason: str
) -> ThresholdOverride:
    policies.can_override_thresholds(actor).ensure()
    if measure not in Measure.values:
        raise ValidationFailed.on("measure", f"one of: {', '.join(Measure.values)}")
    if not 0 < warn < critical:
        raise ValidationFailed.on("warn" if warn <= 0 else "critical", "thresholds satisfy 0 < warn < critical")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed.on("reason", "is required")
    RegisteredModel.objects.select_for_update(no_key=True).filter(pk=model.pk).first()
    previous = thresholds.for_model(model, measure)
    override = ThresholdOverride.objects.create(
        model=model, measure=measure, warn=warn, critical=critical, reason=reason[:10_000], set_by=actor
    )
    audit_record(
        actor=actor,
        action="monitoring.thresholds_overridden",
        obj=override,
        model_name=model.name,
        before={"warn": previous.warn, "critical": previous.critical, "source": previous.source} if previous else None,
        after={"measure": measure, "warn": warn, "critical": critical},
        reason=reason,
    )
    return override


def evaluate_all(now: datetime | None = None) -> dict[str, int]:
    """The periodic evaluation (Celery beat): every live deployment's latest windows against
    the thresholds in force (an override may have changed them), and staleness: no observation
    or distribution for longer than the tier allows. Each version in a transaction of its own."""
    now = now or timezone.now()
    # Exists, not deployments__retired_at=None: that joins outward and also matches versions
    # never deployed at all.
    deployed = Deployment.objects.filter(version=OuterRef("pk"), retired_at=None)
    live = (
        ModelVersion.objects.filter(Exists(deployed))
        .exclude(state=VersionState.DECOMMISSIONED)
        .select_related("model")
        .order_by("pk")
    )
    done = {"versions": 0, "breaches": 0, "stale": 0}
    for version in live:
        try:
            breaches = _evaluate_version(version, now)
        except Exception:  # one version's trouble must not stop the others; it is logged
            log.exception("monitoring evaluation of %s failed", version)
            continue
        done["versions"] += 1
        done["breaches"] += sum(1 for b in breaches if b["metric"] != "staleness")
        done["stale"] += sum(1 for b in breaches if b["metric"] == "staleness")
    return done


@transaction.atomic
def _evaluate_version(version: ModelVersion, now: datetime) -> list[dict[str, Any]]:
    # ``order_by()``: the models' default ordering would join the version and add its columns to
    # the DISTINCT, reading every window the version ever stored.
    metrics = set(Observation.objects.filter(version=version).order_by().values_list("metric", flat=True).distinct())
    breaches = _metric_breaches([version], _latest([version], metrics)) if metrics else []
    features = set(
        Distribution.objects.filter(version=version, reference=False)
        .order_by()
        .values_list("feature", flat=True)
        .distinct()
    )
    breaches += _distribution_breaches([version], _latest_distributions([version], features)) if features else []
    days = thresholds.stale_after_days(version.model)
    if days:
        reported = [
            Observation.objects.filter(version=version).aggregate(last=Max("window_end"))["last"],
            Distribution.objects.filter(version=version, reference=False).aggregate(last=Max("window_end"))["last"],
        ]
        # Since the last data, or the first live deployment if it came later: data sent before
        # it (a shadow run) does not make a fresh deployment overdue, and a deployment added
        # later does not restart the clock of one that has been silent.
        reported.append(
            Deployment.objects.filter(version=version, retired_at=None).aggregate(at=Min("deployed_at"))["at"]
        )
        since = max((at for at in reported if at is not None), default=None)
        if since is not None and now - since > timedelta(days=days):
            silent = (now - since).days
            detail = f"no monitoring data since {_at(since)} ({silent} days; the tier allows {days})"
            breaches.append(Breach(version, "staleness", "warn", "days without data", float(silent), detail, since))
    return _act(breaches)


def charts(version: ModelVersion, limit: int = 500) -> list[str]:
    """One SVG per metric (and segment, and deployment) of ``version``: its last ``limit`` windows
    against the approved baseline and the warn and critical lines in force, each point marked by
    its level."""
    from monitoring.charts import line_chart

    limits = thresholds.for_model(version.model, Measure.RELATIVE_CHANGE)
    drawn = []
    series = (
        Observation.objects.filter(version=version)
        .order_by()
        .values_list("metric", "segment", "deployment_id")
        .distinct()
    )
    where = _environments({deployment for *_, deployment in series})
    for metric, segment, deployment in sorted(set(series), key=lambda s: (s[0], s[1], s[2] or 0)):
        rows = Observation.objects.filter(version=version, metric=metric, segment=segment, deployment_id=deployment)
        rows = rows.order_by("-window_end")
        points = list(reversed(rows.values_list("window_end", "value")[:limit]))
        baseline = (version.metrics or {}).get(metric)
        lines: list[tuple[str, float, str]] = []
        marked = [(t, v, "ok") for t, v in points]
        if isinstance(baseline, int | float) and not isinstance(baseline, bool) and baseline:
            lines.append(("approved", float(baseline), "#417690"))
            if limits is not None:
                for label, share, colour in (
                    ("warn", limits.warn, "#e0a800"),
                    ("critical", limits.critical, "#ba2121"),
                ):
                    lines += [(label, baseline * (1 + share), colour), (label, baseline * (1 - share), colour)]
                marked = [
                    (t, v, measures.level(measures.relative_change(v, float(baseline)), limits.warn, limits.critical))
                    for t, v in points
                ]
        title = (f"{metric}[{segment}]" if segment else metric) + where.get(deployment, "")
        drawn.append(line_chart(title, marked, lines))
    return drawn
