from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ServiceBackedAdmin, ShownForm, shown
from common.errors import DomainError
from common.policy import can_use_admin
from registry import hooks, policies, selectors, services
from registry.models import Alias, ApiToken, Dataset, DatasetVersion, ModelVersion, RegisteredModel

MODEL_FORM_FIELDS: tuple[str, ...] = (
    "name",
    *services.MODEL_TEXT_FIELDS,
    *services.MODEL_CONTROL_FIELDS,
    "tags",
)


class TagsForm(ShownForm):
    """Tags must be an object (the service checks each key and value, naming the rule): a list
    or a string is refused on the page, and nothing but an empty box means no tags."""

    def clean_tags(self) -> Any:
        value = self.cleaned_data.get("tags")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Tags are an object of key: value strings, such as {"use": "pricing"}.')
        return value


class VersionInline(admin.TabularInline):
    """A model's versions on its page, for everyone who may see the model; read-only."""

    model = ModelVersion
    fields = readonly_fields = ("number", "state", "artifact_sha256", "framework", "created_by", "created_at")
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(can_use_admin(request.user))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("created_by")


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ServiceBackedAdmin):
    list_display = [
        "name",
        "display_name",
        "team",
        "owner",
        "risk_tier",
        "status",
        "restricted",
        "updated_at",
    ]
    list_filter = ["risk_tier", "status", "restricted", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "display_name"]
    readonly_fields = ["risk_tier", "status", "created_by", "created_at", "updated_at"]
    inlines = [VersionInline]
    list_select_related = ["team", "owner"]
    form = TagsForm

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return policies.visible_models(request.user).select_related("team", "owner")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*MODEL_FORM_FIELDS, *self.readonly_fields]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "owner":  # the choices the service accepts: active users
            kwargs["queryset"] = get_user_model().objects.filter(is_active=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return list(self.readonly_fields)
        text, control = _may_change(request.user, obj)
        return [
            *self.readonly_fields,
            "name",
            *([] if text else [*services.MODEL_TEXT_FIELDS, "tags"]),
            *([] if control else services.MODEL_CONTROL_FIELDS),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(can_use_admin(request.user))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not can_use_admin(request.user):
            return False
        return obj is None or any(_may_change(request.user, obj))

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> Any:
        # The versions shown inline are never saved from here (``save_related``).
        return super().construct_change_message(request, form, [], add)

    def save_model(self, request: HttpRequest, obj: RegisteredModel, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            registered = services.model_register(
                actor=request.user,
                **{name: data[name] for name in MODEL_FORM_FIELDS if name in data},
            )
            obj.pk = registered.pk
            return
        changes = {name: data[name] for name in form.changed_data if name in MODEL_FORM_FIELDS and name != "tags"}
        services.model_update(actor=request.user, model=obj, changes=changes, **_tag_changes(form))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Versions are read-only here; nothing related to save."""


@admin.register(ModelVersion)
class ModelVersionAdmin(ServiceBackedAdmin):
    list_display = ["__str__", "state", "framework", "created_by", "created_at"]
    list_filter = ["state", "framework"]
    search_fields = ["model__name", "=artifact_sha256"]
    list_select_related = ["model", "created_by"]
    form = TagsForm
    version_fields = (
        "model",
        "number",
        "state",
        "artifact_uri",
        "artifact_sha256",
        "framework",
        "source_run_id",
        "source_code_commit",
        "source_pipeline_url",
        "parameters",
        "metrics",
        "signature",
        "description",
        "tags",
        "created_by",
        "created_at",
        "updated_at",
    )
    fields = version_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [name for name in self.version_fields if name not in services.VERSION_EDITABLE_FIELDS]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.versions_for(request.user)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        for action in hooks.VERSION_ADMIN_ACTIONS:
            actions[action.__name__] = (action, action.__name__, getattr(action, "short_description", ""))
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are registered through the API or the mlflow client

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not can_use_admin(request.user):
            return False
        return obj is None or bool(policies.can_edit_version(request.user, obj.model))

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        services.version_update(
            actor=request.user,
            version=obj,
            description=form.cleaned_data["description"] if "description" in form.changed_data else None,
            **_tag_changes(form),
        )


def _may_change(user: Any, model: RegisteredModel) -> tuple[bool, bool]:
    """Whether ``user`` may change the model's descriptive fields and tags, and its owner, team
    and restriction (``policies.can_update_model``: the team, and the owner or a risk officer)."""
    return (
        bool(policies.can_update_model(user, model, fields=())),
        bool(policies.can_update_model(user, model, fields=services.MODEL_CONTROL_FIELDS)),
    )


def _tag_changes(form: Any) -> dict[str, Any]:
    """The tags edited on the page, as keys set and keys deleted against what the page showed:
    a tag set or deleted elsewhere since the page was opened (by the mlflow client, say) is
    kept as it is, not undone by saving the page."""
    if "tags" not in form.changed_data:
        return {}
    before, after = shown(form, "tags") or {}, form.cleaned_data["tags"] or {}
    return {
        "set_tags": {key: value for key, value in after.items() if before.get(key) != value},
        "delete_tags": [key for key in before if key not in after],
        "missing_ok": True,
    }


class ReadOnlyAdmin(ServiceBackedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "created_by", "created_at"]
    search_fields = ["name"]
    list_select_related = ["team", "created_by"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "digest", "row_count", "created_by", "created_at"]
    search_fields = ["dataset__name", "=digest"]
    list_select_related = ["dataset", "created_by"]


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "version", "updated_by", "updated_at"]
    search_fields = ["model__name", "name"]
    list_select_related = ["model", "version__model", "updated_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(model__in=policies.visible_models(request.user))


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "user",
        "prefix",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return policies.visible_tokens(request.user, super().get_queryset(request))

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Each token on its own: a refusal is named and the rest are still revoked."""
        revoked = 0
        for token in queryset:
            try:
                services.token_revoke(actor=request.user, token=token)
            except DomainError as exc:
                self.message_user(request, f"{token}: {exc.message}", level=messages.ERROR)
                continue
            revoked += token.revoked_at is None  # one revoked already is left as it was
        if revoked:
            self.message_user(request, f"Revoked {revoked} token(s).")
