from django.urls import path, re_path

from monitoring.api import views

VERSION = r"^models/(?P<model_name>[-a-zA-Z0-9_]+)/versions/(?P<number>[0-9]{1,9})"

urlpatterns = [
    path("monitoring/observations/", views.ObservationsView.as_view(), name="monitoring-observations"),
    path("monitoring/distributions/", views.DistributionsView.as_view(), name="monitoring-distributions"),
    path("monitoring/references/", views.ReferenceView.as_view(), name="monitoring-references"),
    re_path(rf"{VERSION}/monitoring/$", views.SeriesView.as_view(), name="monitoring-series"),
    path(
        "models/<slug:model_name>/monitoring/thresholds/", views.ThresholdView.as_view(), name="monitoring-thresholds"
    ),
]
