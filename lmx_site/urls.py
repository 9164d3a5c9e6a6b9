from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "LMX console"
admin.site.site_title = "LMX console"
admin.site.index_title = "Error history and model inventory"

urlpatterns = [
    path("", include("monitoring.urls")),  # the dashboard
    path("admin/", admin.site.urls),
]
