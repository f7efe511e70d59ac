"""Admin plumbing shared by the apps: refusals from the services become messages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from common.errors import DomainError
from common.policy import can_use_admin


class ServiceBackedAdmin(admin.ModelAdmin):
    """Saves go through services (``save_model`` is overridden by each admin). When a
    service refuses, nothing is written (the admin's transaction rolls back) and the user
    sees the service's reason on the same page."""

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(can_use_admin(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(can_use_admin(request.user))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the registry keeps everything; decommissioning retires, it never deletes
