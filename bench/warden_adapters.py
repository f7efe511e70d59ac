"""Adapters for ``../shared/bench/registry_bench.py``: Warden through its MLflow-compatible
endpoints and through its native API. Each operation is one HTTP request, as the script requires.
The token comes from ``WARDEN_BENCH_TOKEN``; ``mlflow_side_by_side.py`` sets it."""

from __future__ import annotations

import os
from typing import Any

from registry_bench import AdapterError, MlflowAdapter, RegistryAdapter


def _authorised(session: Any) -> Any:
    session.headers["Authorization"] = f"Bearer {os.environ['WARDEN_BENCH_TOKEN']}"
    return session


class WardenMlflow(MlflowAdapter):
    """The stock MLflow adapter, with Warden's token."""

    name = "warden-mlflow"

    def session(self) -> Any:
        return _authorised(super().session())


class WardenNative(RegistryAdapter):
    name = "warden-native"
    sequential_versions = True

    def session(self) -> Any:
        return _authorised(super().session())

    def _u(self, path: str) -> str:
        return f"{self.base_url}/api/v1{path}"

    def ping(self, s: Any) -> None:
        r = s.get(f"{self.base_url}/health", timeout=self.timeout)
        if r.status_code != 200:
            raise AdapterError(f"health: HTTP {r.status_code}")

    def create_model(self, s: Any, name: str) -> None:
        team = os.environ.get("WARDEN_BENCH_TEAM", "bench")
        self._check(s.post(self._u("/models/"), json={"name": name, "team": team}, timeout=self.timeout))

    def create_version(self, s: Any, name: str, source: str) -> str:
        body = self._check(
            s.post(self._u(f"/models/{name}/versions/"), json={"artifact_uri": source}, timeout=self.timeout)
        )
        return str(body["number"])

    def get_version(self, s: Any, name: str, version: str) -> str:
        body = self._check(s.get(self._u(f"/models/{name}/versions/{version}/"), timeout=self.timeout))
        if body.get("model") != name:
            raise AdapterError(f"asked for {name!r}, got {body.get('model')!r}")
        return str(body["number"])

    def search_versions(self, s: Any, name: str, max_results: int = 100) -> list:
        body = self._check(
            s.get(self._u(f"/models/{name}/versions/"), params={"page_size": max_results}, timeout=self.timeout)
        )
        return [str(v["number"]) for v in body["results"]]

    def set_alias(self, s: Any, name: str, alias: str, version: str) -> None:
        self._check(
            s.put(self._u(f"/models/{name}/aliases/{alias}/"), json={"version": int(version)}, timeout=self.timeout)
        )

    def get_version_by_alias(self, s: Any, name: str, alias: str) -> str:
        body = self._check(s.get(self._u(f"/models/{name}/aliases/{alias}/"), timeout=self.timeout))
        return str(body["version"])

    def list_models(self, s: Any, max_results: int = 100) -> list:
        body = self._check(s.get(self._u("/models/"), params={"page_size": max_results}, timeout=self.timeout))
        return body["results"]
