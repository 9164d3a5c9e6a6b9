from django.contrib import admin
from django.urls import path

admin.site.site_header = "LMX console"
admin.site.site_title = "LMX console"
admin.site.index_title = "Error history and model inventory"

urlpatterns = [
    path("admin/", admin.site.urls),
]
