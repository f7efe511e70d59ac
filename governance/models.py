"""Risk assessments, approval policies, requests and decisions arrive here; the version
lifecycle states they drive are defined in ``registry.models.VersionState``."""
