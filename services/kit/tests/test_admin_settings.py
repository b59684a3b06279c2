"""Platform administrators from settings: the demo administrator in development only (finding: demo admins in
production)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from tongban_kit.demo import DEMO_CITIZENS, DEMO_STAFF, demo_user_id
from tongban_kit.settings import AdminSettings

REAL_ADMIN = "3f1c2a8e-5b7d-4e0f-9a61-2d8c4b7e9f10"


class ExampleSettings(AdminSettings):
    model_config = SettingsConfigDict(env_prefix="TONGBAN_EXAMPLE_", extra="ignore")


def test_the_demo_administrator_is_the_default_in_development_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ExampleSettings().bootstrap_admins == [demo_user_id("demo-admin")]
    for environment in ("test", "prod"):
        monkeypatch.setenv("TONGBAN_EXAMPLE_ENVIRONMENT", environment)
        assert ExampleSettings().bootstrap_admins == []
        monkeypatch.setenv("TONGBAN_EXAMPLE_BOOTSTRAP_ADMINS", json.dumps([REAL_ADMIN]))
        assert ExampleSettings().bootstrap_admins == [REAL_ADMIN]
        monkeypatch.delenv("TONGBAN_EXAMPLE_BOOTSTRAP_ADMINS")


@pytest.mark.parametrize(
    "demo",
    [
        demo_user_id("demo-admin"),
        demo_user_id("hz-admin"),
        demo_user_id(DEMO_CITIZENS[0]),
        demo_user_id(next(iter(DEMO_STAFF))),
        demo_user_id("demo-enterprise"),
        "demo-admin",
        "demo-app",
        "demo-spa",
    ],
)
@pytest.mark.parametrize("environment", ["test", "prod"])
def test_a_demo_identity_as_administrator_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, demo: str, environment: str
) -> None:
    monkeypatch.setenv("TONGBAN_EXAMPLE_ENVIRONMENT", environment)
    monkeypatch.setenv("TONGBAN_EXAMPLE_BOOTSTRAP_ADMINS", json.dumps([REAL_ADMIN, demo]))
    with pytest.raises(ValidationError, match="demo identities"):
        ExampleSettings()


def test_tests_may_allow_demo_administrators_production_never(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = [demo_user_id("demo-admin"), "demo-app"]
    allowed = ExampleSettings(environment="test", bootstrap_admins=demo, allow_demo_admins=True)
    assert allowed.bootstrap_admins == demo
    with pytest.raises(ValidationError, match="allow_demo_admins"):
        ExampleSettings(environment="prod", bootstrap_admins=demo, allow_demo_admins=True)
    assert ExampleSettings(environment="dev", bootstrap_admins=demo).bootstrap_admins == demo
