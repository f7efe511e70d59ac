"""MLflow's model-registry REST API (2.0) on top of Warden's services.

An engineer points ``MLFLOW_TRACKING_URI`` (or the registry URI) at Warden and keeps using
``mlflow.register_model``, ``MlflowClient`` and ``models:/name@alias``. Every write goes through
the same services as the native API, so the same rules and the same audit trail apply: a version
is a Warden draft, a protected alias asks the deployment gate, nothing is deleted. ``docs/mlflow.md``
lists the endpoints and how each maps onto Warden.
"""
