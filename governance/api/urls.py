from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from governance.api import views

MODEL = "models/<slug:model_name>"
VERSION = r"^models/(?P<model_name>[-a-zA-Z0-9_]+)/versions/(?P<number>[0-9]{1,9})"

router = SimpleRouter()
router.register("approval-requests", views.ApprovalRequestViewSet, basename="approval-request")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = [
    re_path(rf"{VERSION}/submit/$", views.SubmitView.as_view(), name="version-submit"),
    re_path(rf"{VERSION}/suspend/$", views.SuspendView.as_view(), name="version-suspend"),
    re_path(rf"{VERSION}/deprecate/$", views.DeprecateView.as_view(), name="version-deprecate"),
    re_path(
        rf"{VERSION}/revalidation/$",
        views.lifecycle_view("revalidation", "Ask for a revalidation of an approved version").as_view(),
        name="version-revalidation",
    ),
    re_path(
        rf"{VERSION}/reinstatement/$",
        views.lifecycle_view("reinstatement", "Ask to lift a version's suspension").as_view(),
        name="version-reinstatement",
    ),
    re_path(
        rf"{VERSION}/decommission/$",
        views.lifecycle_view("decommission", "Ask to decommission a version").as_view(),
        name="version-decommission",
    ),
    path(
        f"{MODEL}/decommission/",
        views.lifecycle_view("decommission", "Ask to decommission a model and all its versions").as_view(),
        name="model-decommission",
    ),
    re_path(rf"{VERSION}/exceptions/$", views.ExceptionView.as_view(), name="version-exceptions"),
    re_path(rf"{VERSION}/deployments/$", views.VersionDeploymentView.as_view(), name="version-deployments"),
    path("gate/", views.GateView.as_view(), name="gate"),
    path("history/alias/", views.AliasAtView.as_view(), name="history-alias"),
    path("history/deployments/", views.DeploymentsAtView.as_view(), name="history-deployments"),
    path("history/inventory/", views.InventoryAtView.as_view(), name="history-inventory"),
    path("validator-assignments/", views.ValidatorAssignmentView.as_view(), name="validator-assign"),
    path("validator-assignments/remove/", views.ValidatorUnassignView.as_view(), name="validator-unassign"),
    re_path(r"^conditions/(?P<pk>[0-9]{1,18})/close/$", views.ConditionCloseView.as_view(), name="condition-close"),
    path(f"{MODEL}/risk-assessment/", views.AssessmentView.as_view(), name="risk-assessment"),
    path(f"{MODEL}/tier-override/", views.TierOverrideView.as_view(), name="tier-override"),
    path(f"{MODEL}/findings/", views.FindingView.as_view(), name="findings"),
    path("scorecard/", views.ScorecardView.as_view(), name="scorecard"),
    re_path(r"^findings/(?P<pk>[0-9]{1,18})/$", views.FindingDetailView.as_view(), name="finding"),
    re_path(
        r"^findings/(?P<pk>[0-9]{1,18})/acknowledge/$",
        views.finding_move_view("acknowledged", "Acknowledge a finding").as_view(),
        name="finding-acknowledge",
    ),
    re_path(
        r"^findings/(?P<pk>[0-9]{1,18})/remediate/$",
        views.finding_move_view("remediated", "Say a finding is remediated").as_view(),
        name="finding-remediate",
    ),
    re_path(
        r"^findings/(?P<pk>[0-9]{1,18})/close/$",
        views.finding_move_view("closed", "Close a finding (governance roles)").as_view(),
        name="finding-close",
    ),
    *router.urls,
]
