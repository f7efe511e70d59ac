from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ServiceBackedAdmin
from common.errors import DomainError
from notifications import services
from notifications.models import Attempt, Delivery, Message, Webhook
from notifications.policies import can_manage


@admin.register(Webhook)
class WebhookAdmin(ServiceBackedAdmin):
    list_display = ["name", "url", "active", "include_restricted", "events"]
    readonly_fields = ["secret"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The secret is made when the webhook is saved: the add page has none to show yet.
        shown = ["name", "url", "events", "active", "include_restricted"]
        return shown if obj is None else [*shown, "secret"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(can_manage(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(can_manage(request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(can_manage(request.user))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(can_manage(request.user))

    def save_model(self, request: HttpRequest, obj: Webhook, form: Any, change: bool) -> None:
        saved = services.webhook_save(actor=request.user, webhook=obj, fields=form.changed_data if change else None)
        obj.pk = saved.pk


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = readonly_fields = ("number", "at", "ok", "status_code", "error", "duration_ms")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnly(ServiceBackedAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(can_manage(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(can_manage(request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ReadOnly):
    list_display = ["created_at", "event", "subject", "model_name"]
    list_filter = ["event"]
    search_fields = ["=model_name", "subject"]
    date_hierarchy = "created_at"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    """The delivery log: every delivery with each attempt; select deliveries to send again."""

    list_display = ["id", "created_at", "event", "channel", "target", "state", "attempts", "delivered_at", "replay_of"]
    list_filter = ["state", "channel", "message__event"]
    search_fields = ["=id", "=address", "=message__model_name"]
    list_select_related = ["message", "webhook"]
    inlines = [AttemptInline]
    actions = ["replay"]

    @admin.display(description="event")
    def event(self, delivery: Delivery) -> str:
        return delivery.message.event

    @admin.display(description="to")
    def target(self, delivery: Delivery) -> str:
        return delivery.address or str(delivery.webhook)

    @admin.action(description="Send the selected deliveries again (as new deliveries)")
    def replay(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        try:
            with transaction.atomic():  # all of the selection, or none of it
                made = [
                    services.delivery_replay(actor=request.user, delivery=delivery, reason="replayed from the admin")
                    for delivery in queryset
                ]
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{len(made)} delivery(ies) queued again.", messages.SUCCESS)
