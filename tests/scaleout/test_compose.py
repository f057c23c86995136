"""The deployable stack, checked without Docker (it cannot run here): the compose file parses, passes only settings
that exist, runs commands the CLI knows, starts API and workers after the migrations, lets workers scale, and the
README and docs/deployment.md describe what it contains."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import _parser
from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Read by boto3's standard credential chain, not by Settings.
AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"}
SETTINGS = {name.upper() for name in Settings.model_fields}


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / name).read_text()))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("docker-compose.yml")


def own_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this project's image."""
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def all_services(compose: dict[str, Any]) -> set[str]:
    included = set()
    for path in compose.get("include", []):
        included |= set(load(path)["services"])
    return set(compose["services"]) | included


def test_the_app_services_pass_only_settings_that_exist(compose: dict[str, Any]) -> None:
    services = own_services(compose)
    assert set(services) == {"migrate", "api", "worker"}
    for name, service in services.items():
        unknown = set(service["environment"]) - SETTINGS - AWS_VARIABLES
        assert not unknown, f"{name} sets variables that are no setting: {unknown}"
        assert {"DATABASE_URL", "STORAGE_URL", "TEMPORAL_ADDRESS", "TASK_QUEUE"} <= set(service["environment"])
        assert service["environment"]["STORAGE_URL"].startswith("s3://")  # shared storage, never a local disk
        _parser().parse_args(service["command"])  # a command the CLI knows


def test_the_settings_are_valid_values(compose: dict[str, Any]) -> None:
    """Values without compose interpolation validate as Settings (types, enums, ranges)."""
    for service in own_services(compose).values():
        literal = {k.lower(): v for k, v in service["environment"].items() if k in SETTINGS and "${" not in str(v)}
        Settings(**literal)


def test_api_and_workers_start_after_migrations_and_the_temporal_setup(compose: dict[str, Any]) -> None:
    services, known = compose["services"], all_services(compose)
    assert services["migrate"]["command"] == ["db", "upgrade"] and services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["temporal-search-attributes"]["condition"] == "service_completed_successfully"
    for name, service in compose["services"].items():
        assert set(service.get("depends_on", {})) <= known, f"{name} depends on an unknown service"
    assert {"temporal", "temporal-ui", "temporal-search-attributes"} <= known


def test_workers_can_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["command"] == ["worker"]
    assert "ports" not in worker and "container_name" not in worker  # `--scale worker=N` would collide
    assert worker["healthcheck"] == {"disable": True}  # the image's check is the API's /healthz


def test_the_bucket_of_storage_url_is_the_one_created(compose: dict[str, Any]) -> None:
    bucket = compose["services"]["api"]["environment"]["STORAGE_URL"].removeprefix("s3://").split("/")[0]
    assert f"store/{bucket}" in " ".join(compose["services"]["minio-bucket"]["command"])
    assert compose["services"]["migrate"]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"


def test_the_image_runs_as_a_user_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*/healthz", dockerfile, re.MULTILINE | re.DOTALL)
    assert 'ENTRYPOINT ["album-enhance"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "data", ".env"} <= set(ignored)


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_scale_out_section_matches_the_compose_file(compose: dict[str, Any]) -> None:
    section = readme_section("Scale out")
    named = set(re.findall(r"`([a-z][a-z-]*)`", section))
    assert set(compose["services"]) <= named, "a service of docker-compose.yml is missing from the README"
    assert "--scale worker=" in section and "docker-compose.temporal.yml" in section
    for variable in re.findall(r"`([A-Z][A-Z_]+)`", section):
        assert variable in SETTINGS, f"the README names {variable}, which is no setting"


def test_every_setting_is_documented_for_production() -> None:
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    missing = {name for name in SETTINGS if f"`{name}`" not in deployment}
    assert not missing, f"docs/deployment.md does not describe {sorted(missing)}"
