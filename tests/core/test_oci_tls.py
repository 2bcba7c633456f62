"""TLS to a registry behind a private CA: trusted only with that CA; plain HTTP only when marked insecure."""

from __future__ import annotations

import pytest

from provenance.core.errors import RegistryError, TransientError
from provenance.core.oci import RegistryClient
from tests.plugins.registry import RegistryServer, make_image, push_image, unique_repository

pytestmark = pytest.mark.integration


def test_private_ca_registry_is_reachable_with_its_ca(tls_registry: RegistryServer) -> None:
    repo, image = unique_repository("tls"), make_image()
    with tls_registry.client() as client:
        assert push_image(client, repo, image, "v1") == image.digest
        assert client.get_manifest(repo, "v1").digest == image.digest


def test_private_ca_registry_is_refused_without_its_ca_and_not_retried(tls_registry: RegistryServer) -> None:
    with RegistryClient(tls_registry.host, retries=3) as client, pytest.raises(RegistryError) as caught:
        client.get_manifest("any/repo", "v1")
    assert not isinstance(caught.value, TransientError)
    assert caught.value.code == "tls_verify_failed"
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_a_bad_ca_bundle_is_a_clear_error() -> None:
    with pytest.raises(RegistryError) as caught:
        RegistryClient("registry.example.test", ca_certificates="-----BEGIN CERTIFICATE-----\nnope\n")
    assert caught.value.code == "bad_ca"
