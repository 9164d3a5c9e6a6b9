from django.contrib import admin

from inference.models import StoredResponse


@admin.register(StoredResponse)
class StoredResponseAdmin(admin.ModelAdmin):
    list_display = ["response_id", "created_at", "model", "previous_response_id"]
    list_filter = ["model", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["response_id", "model", "previous_response_id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in StoredResponse._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
