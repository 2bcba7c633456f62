"""Schemathesis against the generated OpenAPI schema, through Django's WSGI app in this process: every operation,
with valid and invalid input, answers without a server error and as its schema says.

Bounded for CI: a few derandomized examples per operation, each in a savepoint rolled back afterwards (examples do
not see each other's changes, and nothing is committed: a queued scan never reaches a broker). Operations that
would reach out to the network are left out: trust-root refresh and initialize (TUF), and the CI gate and
admission webhook (they may resolve tags at a registry).
"""

from __future__ import annotations

import logging
import os
import time

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from provenance.accounts import services as account_services
from provenance.accounts.models import ApiToken
from provenance.wsgi import application
from tests.accounts.test_access import world as world  # one of every row, so detail routes find something
from tests.factories import user_with_role

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("PROVENANCE_SCHEMATHESIS_EXAMPLES", "10"))
NETWORK = r"^/api/v1/(trust-roots/(initialize|[^/]+/refresh)/|check/|admission/)$"


def _fuzz(strategy: st.SearchStrategy, headers: dict[str, str], answered: set[int]) -> None:
    """Up to EXAMPLES cases of one operation, each in a savepoint rolled back; raises the checks' failures."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        with transaction.atomic():
            response = case.call(headers=headers)
            transaction.set_rollback(True)
        answered.add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run()


def _existing(path: str, rows: dict[str, str]) -> dict[str, str]:
    """Path parameters naming rows of the world fixture, for ``path``."""
    resource = path.removeprefix("/api/v1/").split("/", 1)[0]
    if "{digest}" in path:
        return {"digest": rows["digest"]}
    if "{name}" in path:
        return {"name": rows["name_key"] if resource == "public-keys" else rows["name_root"]}
    if "{id}" in path:
        key = {"sources": "pk_source", "scans": "pk_scan", "policies": "pk_policy", "tokens": "pk_token",
               "audit": "pk_audit", "git-sources": "pk_source", "git-commits": "pk_source",
               "monitor": "pk_source"}[resource]
        return {"id": rows[key]}
    return {}


@pytest.fixture
def in_process() -> object:
    """The WSGI app in the test's transaction: as Django's test client does, keep requests from closing the
    connection (which would end the test's transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    quiet = logging.getLogger("django.request")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # thousands of expected 4xx lines; a 500 is still logged (and fails the test)
    yield application
    quiet.setLevel(level)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_every_operation_answers_without_a_server_error_and_as_documented(
        in_process: object, world: dict[str, str]) -> None:
    admin = user_with_role("admin", "fuzz-admin")
    secret = account_services.create_token(admin, name="schemathesis", scope=ApiToken.Scope.WRITE).secret
    headers = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", in_process, headers=headers)
    schema = schema.exclude(path_regex=NETWORK)
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
        if existing := _existing(operation.path, world):
            # Also on rows that exist: a random id is nearly always a 404, which looks at nothing.
            strategies += [operation.as_strategy(mode, path_parameters=existing) for mode in GenerationMode]
        strategy = st.one_of(strategies)

        try:
            _fuzz(strategy, headers, answered.setdefault(operation.label, set()))
        except (Exception, BaseExceptionGroup) as err:  # every operation's failure, reported together
            found = err.exceptions if isinstance(err, BaseExceptionGroup) else (err,)
            failures += [f"{operation.label}: {str(e)[:3000]}" for e in found]
    elapsed = time.monotonic() - started
    if os.environ.get("PROVENANCE_SCHEMATHESIS_REPORT"):
        for label, codes in sorted(answered.items()):
            print(label, sorted(codes))
    assert operations >= 30, f"only {operations} operations in the schema"
    assert failures == [], "\n\n".join(failures)
    assert elapsed < 240, f"took {elapsed:.0f} s"
