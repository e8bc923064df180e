"""Django admin for connections, sync history, quarantined records and PSG recordings.

Credentials are write-only here as in the API: the form has an empty "new credentials"
field and never shows what is stored. Writes go through the services (credential and SSRF
checks, PSG validation and size limit), not around them. Sync runs and quarantined records
are history: read-only.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from tenants.api.errors import ApplicationError

from . import psg, services
from .selectors import PSG_PROGRESS
from .models import PSG_PROVIDERS, Connection, PsgRecording, QuarantinedRecord, SyncRun



def _message(exc: Exception) -> str:
    if isinstance(exc, ApplicationError):
        return str(exc.detail)
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)


class ConnectionForm(forms.ModelForm):
    base_url = forms.URLField(max_length=300, assume_scheme="https")
    new_credentials = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "placeholder": '{"api_key": "..."}'}),
        help_text="JSON object of strings, e.g. {\"api_key\": \"...\"} (Asleep) or {\"token\": \"...\"}. "
        "Stored encrypted and never shown again; leave empty to keep the current credentials.",
    )

    class Meta:
        model = Connection
        fields = ["organization", "name", "provider", "base_url", "options", "sync_interval", "status"]

    def clean_new_credentials(self):
        text = self.cleaned_data["new_credentials"].strip()
        if not text:
            if self.instance.pk is None:
                raise ValidationError("A new connection needs credentials.")
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValidationError("Credentials must be a JSON object, e.g. {\"api_key\": \"...\"}.") from None
        if not isinstance(value, dict):
            raise ValidationError("Credentials must be a JSON object.")
        return value

    def clean(self):
        data = super().clean()
        provider = data.get("provider") or self.instance.provider
        try:
            if data.get("base_url") and "base_url" in self.changed_data:
                services.base_url_validate(data["base_url"])
            if data.get("new_credentials") is not None and provider:
                services.credentials_validate(provider, data["new_credentials"])
        except ApplicationError as exc:
            raise ValidationError(_message(exc)) from None
        return data

    def save(self, commit=True):
        connection = super().save(commit=False)
        if self.cleaned_data.get("new_credentials") is not None:
            connection.credentials = self.cleaned_data["new_credentials"]
            if connection.pk is not None:
                # New credentials deserve a fresh try (as services.connection_update).
                connection.status, connection.last_error = "active", ""
        if commit:
            connection.save()
        return connection


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "organization", "provider", "status", "last_synced_at", "next_sync_at"]
    list_filter = ["provider", "status", "organization"]
    search_fields = ["name", "organization__name", "organization__slug"]
    list_select_related = ["organization"]
    readonly_fields = ["uuid", "last_error", "last_synced_at", "next_sync_at", "created_at", "updated_at"]
    actions = ["test_connection", "sync_now"]

    def get_fields(self, request, obj=None):
        fields = ["organization", "name", "provider", "base_url", "new_credentials", "options", "sync_interval",
                  "status"]
        return fields + (self.readonly_fields if obj else [])

    def get_readonly_fields(self, request, obj=None):
        # Credentials belong to one provider and one organization: neither moves afterwards.
        return [*self.readonly_fields, "organization", "provider"] if obj else []

    @admin.action(description="Test connection (try the stored credentials)")
    def test_connection(self, request, queryset):
        for connection in queryset:
            result = services.connection_check(connection=connection)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{connection.name}: {result.detail}", level)

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        for connection in queryset:
            if connection.provider in PSG_PROVIDERS:
                self.message_user(request, f"{connection.name}: scorers are not synced.", messages.WARNING)
                continue
            try:
                services.connection_sync_now(connection=connection)
            except ApplicationError as exc:
                self.message_user(request, f"{connection.name}: {_message(exc)}", messages.WARNING)
            else:
                self.message_user(request, f"{connection.name}: a sync was queued.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History rows: listed and opened, never added, edited or deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "connection", "status", "fetched", "created", "updated", "quarantined", "error"]
    list_filter = ["status", "organization"]
    list_select_related = ["connection"]
    date_hierarchy = "started_at"


@admin.register(QuarantinedRecord)
class QuarantinedRecordAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "connection", "upstream_id", "reason"]
    list_filter = ["organization"]
    list_select_related = ["connection"]
    search_fields = ["upstream_id", "reason"]


class PsgUploadForm(forms.ModelForm):
    """Upload through integrations.psg.psg_recording_upload: EDF validation and size limit apply.

    The upload runs in ``clean`` so that a refused file becomes a form error; the admin's
    add view wraps the request in a transaction, and the scoring task is enqueued only
    once it commits.
    """

    file = forms.FileField(help_text="An EDF recording (.edf). Patient fields are blanked before it is sent.")

    class Meta:
        model = PsgRecording
        fields = ["participant", "connection"]

    def clean(self):
        data = super().clean()
        participant, connection, upload = data.get("participant"), data.get("connection"), data.get("file")
        if participant is None or connection is None or upload is None:
            return data
        if participant.organization_id != connection.organization_id:
            raise ValidationError("The participant and the connection belong to different organizations.")
        try:
            self.recording = psg.psg_recording_upload(
                organization=participant.organization, participant=participant, connection=connection,
                file=upload, original_name=upload.name or "",
            )
        except (ApplicationError, ValidationError) as exc:
            raise ValidationError(_message(exc)) from None
        return data


@admin.register(PsgRecording)
class PsgRecordingAdmin(admin.ModelAdmin):
    list_display = ["created_at", "participant", "connection", "status", "progress", "error", "finished_at"]
    list_filter = ["status", "organization"]
    list_select_related = ["participant", "connection"]
    raw_id_fields = ["participant", "connection"]
    readonly_fields = ["uuid", "organization", "participant", "connection", "original_name", "size", "edf_start",
                       "edf_duration_seconds", "edf_channels", "timezone", "status", "progress", "error",
                       "sleep_session", "submitted_at", "finished_at", "created_at"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = PsgUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["participant", "connection", "file"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        # The service stored the row in the form's clean(): adopt it for the admin's log and redirect.
        obj.pk, obj.uuid = form.recording.pk, form.recording.uuid
        obj.__dict__.update({k: v for k, v in form.recording.__dict__.items() if not k.startswith("_")})

    def delete_model(self, request, obj):
        psg.psg_recording_delete(recording=obj)

    def delete_queryset(self, request, queryset):
        for recording in queryset:
            psg.psg_recording_delete(recording=recording)

    @admin.display(description="Progress")
    def progress(self, obj):
        percent = PSG_PROGRESS.get(obj.status, 0)
        return format_html('<progress max="100" value="{}">{} %</progress> {}', percent, percent,
                           obj.get_status_display())
