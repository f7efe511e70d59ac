from django.urls import path
from rest_framework.routers import SimpleRouter

from registry.api import views

MODEL = r"models/(?P<model_name>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register("models", views.ModelViewSet, basename="model")
router.register(rf"{MODEL}/versions", views.ModelVersionViewSet, basename="model-version")
router.register(rf"{MODEL}/aliases", views.AliasViewSet, basename="alias")
router.register("versions", views.VersionViewSet, basename="version")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register(
    r"datasets/(?P<dataset_name>[-a-zA-Z0-9_]+)/versions",
    views.DatasetVersionNestedViewSet,
    basename="dataset-versions",
)
router.register("dataset-versions", views.DatasetVersionViewSet, basename="dataset-version")
router.register("tokens", views.TokenViewSet, basename="token")

urlpatterns = [path("me/", views.MeView.as_view(), name="me"), *router.urls]
