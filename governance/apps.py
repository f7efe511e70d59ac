from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from governance import admin, gate, services
        from registry import hooks

        if gate.check_alias not in hooks.ALIAS_CHECKS:
            hooks.ALIAS_CHECKS.append(gate.check_alias)
        if services.check_team_change not in hooks.TEAM_CHECKS:
            hooks.TEAM_CHECKS.append(services.check_team_change)
        for action in (admin.suspend_versions, admin.deprecate_versions):
            if action not in hooks.VERSION_ADMIN_ACTIONS:
                hooks.VERSION_ADMIN_ACTIONS.append(action)
