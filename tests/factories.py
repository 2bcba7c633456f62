"""Rows for tests, and the test Sigstore that signs their material."""

from __future__ import annotations

import functools

import factory

from provenance.core.testsigstore import TestSigstore
from provenance.sources.models import Scan, Source
from provenance.sources.tasks import scan_source
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot


@functools.cache
def make_sigstore(name: str = "provenance-test") -> TestSigstore:
    """One test Sigstore per name per process (key generation is the slow part)."""
    return TestSigstore.create(name=name)


def trust_root_for(sigstore: TestSigstore) -> TrustRoot:
    return trust_services.register(name=sigstore.name, document=sigstore.trusted_root_json())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("test-password")


def user_with_role(role: str | None, username: str | None = None) -> object:
    """A plain (not staff, not superuser) user holding ``role`` (viewer, operator, admin) or none."""
    from provenance.accounts import services as account_services
    from provenance.accounts.roles import Role

    user = UserFactory(username=username or f"{role or 'norole'}-user", is_staff=False, is_superuser=False)
    account_services.set_role(user, Role(role) if role else None)
    return user


def run_scan_now(source: Source) -> Scan:
    """Run one scan of ``source`` in this process (integration tests use a real worker instead)."""
    scan = Scan.objects.create(source=source)
    scan_source.apply(args=[scan.pk])
    scan.refresh_from_db()
    return scan
