from django.contrib import admin

from monitoring.models import ErrorEvent, ModelRecord


@admin.register(ErrorEvent)
class ErrorEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "code", "severity", "model", "endpoint", "http_status"]
    list_filter = ["code", "severity", "model", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["code", "message", "model", "endpoint"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in ErrorEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelRecord)
class ModelRecordAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "format",
        "loaded",
        "present",
        "size_bytes",
        "quantization",
        "architecture",
        "load_count",
        "last_loaded_at",
        "last_load_time_ms",
    ]
    list_filter = ["format", "loaded", "present", "source", "architecture"]
    search_fields = ["model_id", "path", "architecture"]
    readonly_fields = [f.name for f in ModelRecord._meta.fields]

    def has_add_permission(self, request):
        return False
