"""Project-level guarantees: settings from the environment, Django checks, the core's independence, compose."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command, get_commands

from tests.support import missing_component

ROOT = Path(__file__).resolve().parent.parent


def _settings_import(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PROVENANCE_", "SECRET_KEY", "DJANGO_", "DATABASE_URL", "CELERY_"))}
    clean["PROVENANCE_DATA_DIR"] = os.environ.get("PROVENANCE_DATA_DIR", "/tmp")
    code = ("import provenance.settings as s; "
            "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL.split(':')[0])")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_secret_key_is_required_outside_debug_and_demo() -> None:
    result = _settings_import({})
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_embedded_defaults_need_no_server() -> None:
    result = _settings_import({"PROVENANCE_DEMO": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.sqlite3", "filesystem"]


def test_environment_switches_to_postgresql_and_redis() -> None:
    result = _settings_import({"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://u@127.0.0.1:5432/db",
                               "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.postgresql", "redis"]


def test_bad_boolean_is_a_configuration_error() -> None:
    result = _settings_import({"PROVENANCE_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "PROVENANCE_DEBUG must be a boolean" in result.stderr


def test_embedded_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    code = ("import django; django.setup(); from django.db import connection; c = connection.cursor(); "
            "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0]); c.execute('PRAGMA busy_timeout'); "
            "print(c.fetchone()[0])")
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PROVENANCE_DB_NAME"}}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**clean, "DJANGO_SETTINGS_MODULE": "provenance.settings", "PROVENANCE_DEMO": "1",
                                 "PROVENANCE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    journal_mode, busy_timeout = result.stdout.split()
    assert journal_mode == "wal" and int(busy_timeout) >= 10_000


@pytest.mark.django_db
def test_django_checks_and_migrations_are_clean() -> None:
    call_command("check", fail_level="WARNING")
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_framework_and_apps_do_not_import_sigstore() -> None:
    offenders = []
    for path in (ROOT / "provenance" / "core").rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in {"django", "rest_framework", "celery", "kombu"}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    for path in (ROOT / "provenance").rglob("*.py"):
        if "core" in path.relative_to(ROOT / "provenance").parts:
            continue
        for name in _imports(path):
            if name.split(".")[0] in {"sigstore", "cryptography", "httpx"}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name} (only core may)")
    assert offenders == []


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, with ``from package import submodule`` resolved to the submodule."""
    names = _imports(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_verification_has_one_way_in_and_its_formats_are_peers() -> None:
    verify = ROOT / "provenance" / "core" / "verify"
    submodules = {f"provenance.core.verify.{p.stem}" for p in verify.glob("*.py") if p.stem != "__init__"}
    offenders = []
    # Outside the package (the apps, the rest of core, benchmarks) only the face is used.
    for path in [*(ROOT / "provenance").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        if verify in path.parents:
            continue
        for name in _imported_modules(path) & submodules:
            offenders.append(f"{path.relative_to(ROOT)} imports {name} (use provenance.core.verify)")
    # Inside: the two formats never import each other, and the shared checks import neither of them.
    formats = {"provenance.core.verify.cosign", "provenance.core.verify.bundle", "provenance.core.verify.evidence"}
    for path in verify.glob("*.py"):
        module = f"provenance.core.verify.{path.stem}"
        allowed = formats if path.stem in {"__init__", "evidence"} else {module}
        for name in (_imported_modules(path) & formats) - allowed:
            offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
    old_modules = ("cosign", "bundle", "verification")
    assert not any((ROOT / "provenance" / "core" / f"{old}.py").exists() for old in old_modules)


def test_compose_runs_only_what_the_project_has() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "registry", "migrate"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "registry"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    commands = get_commands()
    for name, service in services.items():
        if service.get("build") is None:
            continue
        assert service["build"] == "." and (ROOT / "Dockerfile").is_file()
        command = " ".join(service["command"])
        for manage_command in re.findall(r"manage\.py (\S+)", command):
            assert manage_command in commands, f"{name}: manage.py {manage_command} does not exist"
        if command.startswith("celery"):
            assert "-A provenance" in command
        if command.startswith("gunicorn"):
            assert "provenance.wsgi" in command
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["CELERY_BROKER_URL"].startswith("redis://")
        dependencies = ("postgres",) if name == "migrate" else ("postgres", "redis")
        for dependency in dependencies:
            assert service["depends_on"][dependency]["condition"] == "service_healthy"
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert set(compose["volumes"]) >= {"postgres-data", "redis-data", "provenance-data"}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for part in line.split()[1:-1]:
                assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"
    for requirement in ("gunicorn", "celery", "psycopg", "redis"):
        assert requirement in (ROOT / "requirements.txt").read_text()


def test_htmx_is_vendored_not_loaded_from_a_cdn() -> None:
    assert (ROOT / "static" / "vendor" / "htmx.min.js").stat().st_size > 10_000
    for template in (ROOT / "templates").rglob("*.html"):
        assert "://" not in re.sub(r"\{%.*?%\}|\{\{.*?\}\}", "", template.read_text()).replace(
            "http://127.0.0.1", ""), f"{template} loads something remote"


def test_the_code_is_lint_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        missing_component("ruff is not installed in this environment (it is in requirements-dev.txt)")
    result = subprocess.run([str(ruff), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_core_type_checks_strictly(tmp_path: Path) -> None:
    try:
        import mypy  # noqa: F401
    except ImportError:
        missing_component("mypy is not installed in this environment (it is in requirements-dev.txt)")
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
