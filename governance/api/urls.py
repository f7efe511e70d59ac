from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from governance.api import views

MODEL = "models/<slug:model_name>"
VERSION = r"^models/(?P<model_name>[-a-zA-Z0-9_]+)/versions/(?P<number>[0-9]{1,9})"

router = SimpleRouter()
router.register("approval-requests", views.ApprovalRequestViewSet, basename="approval-request")
router.register("policies", views.PolicyViewSet, basename="policy")

urlpatterns = [
    re_path(rf"{VERSION}/submit/$", views.SubmitView.as_view(), name="version-submit"),
    path(f"{MODEL}/risk-assessment/", views.AssessmentView.as_view(), name="risk-assessment"),
    path(f"{MODEL}/tier-override/", views.TierOverrideView.as_view(), name="tier-override"),
    path("scorecard/", views.ScorecardView.as_view(), name="scorecard"),
    *router.urls,
]
