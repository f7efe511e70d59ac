from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from governance import gate
        from registry import hooks

        if gate.check_alias not in hooks.ALIAS_CHECKS:
            hooks.ALIAS_CHECKS.append(gate.check_alias)
