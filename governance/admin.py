"""The risk officers' console: the queue of requests awaiting my decision, the request page
with the evidence and the decision form, the dashboard, and the published rules. Every write
goes through ``governance.services``; states are never form fields here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from common import validation
from common.admin import ServiceBackedAdmin
from common.errors import Conflict, DomainError, NotFound
from common.policy import can_use_admin
from governance import policies, selectors, services, tiering
from governance.models import (
    ApprovalPolicy,
    ApprovalRequest,
    AwaitingDecision,
    Condition,
    Deployment,
    DocumentStatus,
    Environment,
    Finding,
    Outcome,
    PolicyException,
    RequestState,
    RiskAssessment,
    Scorecard,
    StageState,
)

CONDITION_ROWS = 3


# --- the decision form -------------------------------------------------------------------


class DecisionForm(forms.Form):
    outcome = forms.ChoiceField(choices=Outcome.choices, widget=forms.RadioSelect)
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        required=False,
        help_text="Required for every outcome but approve.",
    )
    # Checked by the service (the stage may have moved on since the page was drawn), so any name.
    stage = forms.CharField(required=False, help_text="You hold roles for more than one stage: name yours.")

    def __init__(self, *args: Any, stages: list[str], conditional: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not conditional:
            outcome: Any = self.fields["outcome"]
            outcome.choices = [(v, label) for v, label in Outcome.choices if v != Outcome.APPROVE_WITH_CONDITIONS]
        # The stage shown is the stage signed: posted even when it is the only one, so that a step
        # that moved on while the page was open is refused, not signed in its place.
        if len(stages) > 1:
            self.fields["stage"].widget = forms.Select(choices=[(name, name) for name in stages])
        else:
            self.fields["stage"].widget = forms.HiddenInput()
            self.fields["stage"].initial = stages[0] if stages else ""


class ConditionForm(forms.Form):
    description = forms.CharField(required=False, widget=forms.TextInput(attrs={"size": 60}))
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
        required=False,
    )
    due_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def condition(self) -> services.ConditionIn | None:
        data = self.cleaned_data
        if not data.get("description"):
            return None
        if not data.get("owner") or not data.get("due_date"):
            raise DomainError("Each condition needs an owner and a due date.")
        return services.ConditionIn(data["description"], data["owner"], data["due_date"])


ConditionFormSet = forms.formset_factory(ConditionForm, extra=CONDITION_ROWS, max_num=CONDITION_ROWS, validate_max=True)


# --- requests ----------------------------------------------------------------------------


class RequestAdminBase(ServiceBackedAdmin):
    list_display = ["number", "model_name", "subject", "tier", "state", "current_stage", "submitted_by", "submitted_at"]
    list_display_links = ["number", "model_name"]
    list_select_related = ["model", "version", "submitted_by"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.requests_for(request.user)

    @admin.display(description="#", ordering="id")
    def number(self, obj: ApprovalRequest) -> str:
        return f"#{obj.pk}"

    @admin.display(description="model", ordering="model__name")
    def model_name(self, obj: ApprovalRequest) -> str:
        return obj.model.name

    @admin.display(description="what")
    def subject(self, obj: ApprovalRequest) -> str:
        return obj.describe()

    @admin.display(description="current stage")
    def current_stage(self, obj: ApprovalRequest) -> str:
        now = timezone.now()
        parts = []
        for stage in obj.stages.all():
            if stage.state != StageState.ACTIVE:
                continue
            late = stage.due_at is not None and stage.due_at < now
            parts.append(f"{stage.name} ({'OVERDUE, ' if late else ''}due {stage.due_at:%Y-%m-%d})")
        return "; ".join(parts) or "—"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The request page: the evidence, the stages and decisions, and the decision form for
        those allowed to sign (others read the reason they may not)."""
        try:
            if not validation.is_number(object_id):
                raise NotFound(f"No approval request {object_id!r}.")
            page = selectors.request_page(request.user, int(object_id))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:governance_approvalrequest_changelist"))
        allowed, stages = policies.signable_stages(request.user, page.request)
        conditional = services.takes_conditions(page.request)
        form = DecisionForm(request.POST or None, stages=[s.name for s in stages], conditional=conditional)
        conditions = ConditionFormSet(request.POST or None, prefix="conditions") if conditional else None
        if request.method == "POST" and allowed:
            done = self._decide(request, page.request, form, conditions)
            if done is not None:
                return done
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Approval request #{page.request.pk}: {page.request.model.name}",
            "page": page,
            "r": page.request,
            "impact": selectors.impact_seen_by(request.user, page.request.impact),
            "replacement": selectors.version_seen_by(request.user, page.request.replacement),
            "explanation": tiering.explain(page.assessment.rationale) if page.assessment else "",
            "allowed": allowed,
            "form": form,
            "conditions": conditions,
            "now": timezone.now(),
            "can_withdraw": policies.can_withdraw(request.user, page.request)
            and page.request.state == RequestState.OPEN,
        }
        return TemplateResponse(request, "admin/governance/request_page.html", context)

    def _decide(
        self, request: HttpRequest, subject: ApprovalRequest, form: DecisionForm, conditions: Any
    ) -> HttpResponse | None:
        if not form.is_valid() or (conditions is not None and not conditions.is_valid()):
            return None
        try:
            made = (
                [c for c in (f.condition() for f in conditions.forms) if c is not None]
                if conditions is not None
                else []
            )
            services.decision_record(
                actor=request.user,
                request=subject,
                outcome=form.cleaned_data["outcome"],
                comment=form.cleaned_data["comment"],
                stage=form.cleaned_data.get("stage") or None,
                conditions=made,
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            if isinstance(exc, Conflict) and "stage" in exc.fields:  # the request moved on: drawn afresh
                return HttpResponseRedirect(request.get_full_path())
            return None
        label = Outcome(form.cleaned_data["outcome"]).label.lower()
        self.message_user(request, f"Recorded: you chose to {label} request #{subject.pk}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:governance_awaitingdecision_changelist"))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/withdraw/",
                self.admin_site.admin_view(self.withdraw_view),
                name=f"governance_{self.opts.model_name}_withdraw",
            ),
            *super().get_urls(),
        ]

    def withdraw_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        page_url = reverse("admin:governance_approvalrequest_change", args=[object_id])
        if request.method != "POST" or not validation.is_number(object_id):
            return HttpResponseRedirect(page_url)
        try:
            subject = selectors.request_get(request.user, int(object_id))
            services.request_withdraw(actor=request.user, request=subject, reason=request.POST.get("reason", ""))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"Request #{object_id} withdrawn.", messages.SUCCESS)
        return HttpResponseRedirect(page_url)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(RequestAdminBase):
    list_filter = ["state", "kind", "tier"]
    search_fields = ["=model__name"]

    def get_urls(self) -> list[Any]:
        return [
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="governance_dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Governance dashboard",
            "d": selectors.dashboard(request.user),
            "awaiting": selectors.awaiting(request.user, selectors.requests_for(request.user)).count(),
        }
        return TemplateResponse(request, "admin/governance/dashboard.html", context)


@admin.register(AwaitingDecision)
class AwaitingDecisionAdmin(RequestAdminBase):
    """The queue: requests whose current stage needs one of my roles and that I may sign,
    oldest first; overdue stages say so."""

    ordering = ["submitted_at", "id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.awaiting(request.user, selectors.requests_for(request.user))

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:governance_approvalrequest_change", args=[object_id]))


# --- published rules ---------------------------------------------------------------------


class PublishedDocumentAdmin(ServiceBackedAdmin):
    """Drafts are edited here through the services; published versions are read-only. New
    drafts start as copies of the published version ("Draft a new version")."""

    editable: tuple[str, ...] = ()
    readonly_extra: tuple[str, ...] = ()
    actions = ["draft_new_version", "publish"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not (can_use_admin(request.user) and policies.can_edit_rules(request.user)):
            return False
        return obj is None or obj.status == DocumentStatus.DRAFT

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        meta = ["version", "status", "created_by", "created_at", "published_by", "published_at"]
        if obj is not None and obj.status == DocumentStatus.DRAFT:
            return [*meta, *self.readonly_extra]
        return [*meta, *self.readonly_extra, *self.editable]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in self.editable}
        services.document_update(actor=request.user, document=obj, changes=changes)

    def _each(self, request: HttpRequest, queryset: QuerySet, work: Any, done: str) -> None:
        """Each document on its own: a refusal is named and the rest are still done."""
        for document in queryset:
            try:
                result = work(document)
            except DomainError as exc:
                self.message_user(request, f"{document}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{result}: {done}.", messages.SUCCESS)

    @admin.action(description="Publish the selected drafts")
    def publish(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, lambda d: services.document_publish(actor=request.user, document=d), "published")


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(PublishedDocumentAdmin):
    list_display = ["__str__", "tier", "version", "status", "published_by", "published_at"]
    list_filter = ["tier", "status"]
    list_select_related = ["published_by"]
    readonly_extra = ("tier",)
    editable = services.POLICY_FIELDS

    @admin.action(description="Draft a new version of the selected tiers' policies")
    def draft_new_version(self, request: HttpRequest, queryset: QuerySet) -> None:
        tiers = sorted(set(queryset.values_list("tier", flat=True)))
        for tier in tiers:
            try:
                draft = services.policy_draft(actor=request.user, tier=tier)
            except DomainError as exc:
                self.message_user(request, f"T{tier}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{draft}: edit it, then publish it.", messages.SUCCESS)


@admin.register(Scorecard)
class ScorecardAdmin(PublishedDocumentAdmin):
    list_display = ["__str__", "version", "status", "published_by", "published_at"]
    list_filter = ["status"]
    editable = services.SCORECARD_FIELDS

    @admin.action(description="Draft a new version of the scorecard")
    def draft_new_version(self, request: HttpRequest, queryset: QuerySet) -> None:
        try:
            draft = services.scorecard_draft(actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{draft}: edit it, then publish it.", messages.SUCCESS)


# --- read-only records -------------------------------------------------------------------


class ReadOnly(ServiceBackedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(ReadOnly):
    list_display = ["model", "inherent_tier", "prohibited", "materiality", "complexity", "assessed_by", "created_at"]
    list_filter = ["inherent_tier", "prohibited"]
    search_fields = ["=model__name"]
    list_select_related = ["model", "assessed_by"]
    readonly_fields = ["explanation"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(model__in=policies.registry_policies.visible_models(request.user))

    @admin.display(description="rationale")
    def explanation(self, obj: RiskAssessment) -> str:
        return tiering.explain(obj.rationale)


@admin.register(Condition)
class ConditionAdmin(ReadOnly):
    list_display = ["description", "request_link", "owner", "due_date", "state"]
    list_filter = ["state"]
    list_select_related = ["owner", "request__model"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = selectors.requests_for(request.user).values("pk")
        return super().get_queryset(request).filter(request__in=visible)

    @admin.display(description="request")
    def request_link(self, obj: Condition) -> str:
        url = reverse("admin:governance_approvalrequest_change", args=[obj.request_id])
        return format_html('<a href="{}">#{} {}</a>', url, obj.request_id, obj.request.model.name)


@admin.register(Finding)
class FindingAdmin(ReadOnly):
    list_display = ["title", "model", "version", "severity", "state", "owner", "due_date", "created_at"]
    list_filter = ["severity", "state"]
    search_fields = ["=model__name", "title"]
    list_select_related = ["model", "version__model", "owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = policies.registry_policies.visible_models(request.user)
        return super().get_queryset(request).filter(model__in=visible)


@admin.register(Deployment)
class DeploymentAdmin(ReadOnly):
    list_display = ["version", "environment", "endpoint", "deployed_by", "deployed_at", "retired_at"]
    list_filter = ["environment", "retired_at"]
    search_fields = ["=version__model__name"]
    list_select_related = ["version__model", "environment", "deployed_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.deployments_for(request.user)


@admin.register(Environment)
class EnvironmentAdmin(ReadOnly):
    list_display = ["name", "description"]


@admin.register(PolicyException)
class PolicyExceptionAdmin(ReadOnly):
    list_display = ["version", "scope", "approver", "expires_at", "created_at"]
    list_select_related = ["version__model", "approver"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = policies.registry_policies.visible_models(request.user)
        return super().get_queryset(request).filter(version__model__in=visible)


# --- the kill switch and deprecation, on the registry's list of versions --------------------


def _version_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    past: str,
    explanation: str,
    change: Any,
) -> HttpResponse | None:
    """Change each selected version at once with one reason, asked for on an intermediate page;
    ``change`` is the service, which decides who may and records it."""
    reason = (request.POST.get("reason") or "").strip()
    if "apply" not in request.POST or not reason:
        return TemplateResponse(
            request,
            "admin/governance/version_action.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": f"{title} versions",
                "button": title,
                "action": action,
                "explanation": explanation,
                "versions": queryset,
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "missing_reason": "apply" in request.POST,
            },
        )
    done = []
    for version in queryset:
        try:
            change(actor=request.user, version=version, reason=reason)
            done.append(str(version))
        except DomainError as exc:
            modeladmin.message_user(request, f"{version}: {exc.message}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{past}: {', '.join(done)}.", messages.SUCCESS)
    return None


@admin.action(description="Suspend the selected versions (kill switch)")
def suspend_versions(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    """Risk officers suspend the selected versions at once; the gate refuses them from then on."""
    return _version_action(
        modeladmin,
        request,
        queryset,
        action="suspend_versions",
        title="Suspend",
        past="Suspended",
        explanation="Suspending stops these versions at the gate at once: no deployment, no protected alias. "
        "Their owners and the risk officers are told. Lifting a suspension is a reinstatement request, "
        "decided under the tier's policy.",
        change=services.version_suspend,
    )


@admin.action(description="Deprecate the selected versions")
def deprecate_versions(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    """Owners (of their models' versions) and risk officers take the selected versions out of use."""
    return _version_action(
        modeladmin,
        request,
        queryset,
        action="deprecate_versions",
        title="Deprecate",
        past="Deprecated",
        explanation="Deprecating takes these versions out of use for good: the gate refuses them from now on "
        "(no deployment, no protected alias). A version still deployed is retired first. Decommissioning "
        "comes after.",
        change=services.version_deprecate,
    )
