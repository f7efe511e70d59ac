"""Admin plumbing shared by the apps: refusals from the services become messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from common.errors import TRY_AGAIN, DomainError, to_send_again
from common.policy import can_use_admin

log = logging.getLogger(__name__)


class ShownForm(forms.ModelForm):
    @cached_property
    def changed_data(self) -> list[str]:
        """The fields the user changed: each sent against the value the page showed (``shown``);
        one not sent at all is left as it is."""
        changed = []
        for name, field in self.fields.items():
            bound = self[name]
            if field.widget.value_omitted_from_data(self.data, self.files, bound.html_name):
                continue
            if field.has_changed(shown(self, name), bound.data):
                changed.append(name)
        return changed


class ServiceBackedAdmin(admin.ModelAdmin):
    """Saves go through services (``save_model`` is overridden by each admin). When a
    service refuses, nothing is written (the admin's transaction rolls back) and the user
    sees the service's reason on the same page.

    Each field carries the value the page showed (``show_hidden_initial``), so the form's
    ``changed_data`` (``ShownForm``) names what the user changed, not what differs from the row
    as it is now: an admin that saves only those does not undo a change made elsewhere since the
    page was opened."""

    form = ShownForm

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None:
            field.show_hidden_initial = True
        return field

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


class SendAgainMiddleware:
    """A change PostgreSQL rolled back for a deadlock or a serialisation failure (nothing of it
    was saved) is shown as a message on the page it came from, asking to send it again, not as a
    server error. The APIs answer it in their own shapes before it gets here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not to_send_again(exception):
            return None
        log.warning("%s %s: %s", request.method, request.path, exception)
        messages.error(request, TRY_AGAIN)
        return HttpResponseRedirect(request.get_full_path())


def shown(form: Any, name: str) -> Any:
    """The value the page showed for the field ``name`` (``ServiceBackedAdmin``), or, when the
    form came without it (a page opened before the values were carried, a scripted post), the
    row's value as it is now."""
    bound = form[name]
    if bound.html_initial_name not in form.data:
        return bound.initial
    hidden = bound.field.hidden_widget().value_from_datadict(form.data, form.files, bound.html_initial_name)
    try:
        return bound.field.to_python(hidden)
    except ValidationError:
        return bound.initial
