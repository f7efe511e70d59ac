from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from common.api import api_not_found
from common.views import health, healthz
from registry.mlflow.views import endpoint as mlflow_endpoint

admin.site.site_header = "Warden"
admin.site.site_title = "Warden"
admin.site.index_title = "Model registry and governance"
admin.site.index_template = "admin/warden_index.html"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("registry.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/", include("governance.api.urls")),
    path("api/v1/", include("monitoring.api.urls")),
    path("api-auth/", include("rest_framework.urls")),
    # MLflow's client speaks to /api/2.0/mlflow/… (and its UI to /ajax-api/2.0/mlflow/…).
    re_path(r"^(?:api|ajax-api)/2\.0/mlflow/(?P<path>.*)$", mlflow_endpoint, name="mlflow"),
    path("health", health, name="health"),
    path("healthz", healthz, name="healthz"),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
]
