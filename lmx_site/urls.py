from django.contrib import admin
from django.urls import path

from monitoring.views import dashboard

admin.site.site_header = "LMX console"
admin.site.site_title = "LMX console"
admin.site.index_title = "Error history and model inventory"

urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("admin/", admin.site.urls),
]
