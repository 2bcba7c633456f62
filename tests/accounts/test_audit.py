"""The audit trail: who changed what, append-only, as a page, API and CSV; trust roots and keys versioned, never
replaced in place; the admin cannot edit verdicts, evidence or history."""

from __future__ import annotations

import csv
import io

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import DatabaseError, connection, transaction
from django.test import Client

from provenance.accounts.models import AuditEvent
from provenance.artifacts.models import Artifact
from provenance.policies.models import Reevaluation
from provenance.trust import services as trust_services
from provenance.trust.models import PublicKey, PublicKeyVersion, TrustRoot, TrustRootVersion
from tests.factories import UserFactory, make_sigstore, trust_root_for, user_with_role

pytestmark = pytest.mark.django_db


def pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_changes_through_the_api_are_recorded_with_who_made_them() -> None:
    client = Client()
    operator = user_with_role("operator", "olga")
    admin = user_with_role("admin", "ada")
    root = trust_root_for(make_sigstore())
    client.force_login(operator)
    client.post("/api/v1/sources/", {"name": "app", "kind": "image", "location": "registry.test/app:1",
                                     "trust_root": root.name, "username": "bot", "password": "hunter2"},
                content_type="application/json")
    client.force_login(admin)
    client.post("/api/v1/public-keys/", {"name": "release", "pem": pem().decode()}, content_type="application/json")
    client.delete("/api/v1/public-keys/release/")

    events = list(AuditEvent.objects.order_by("pk").values_list("actor_name", "action"))
    credentials = AuditEvent.objects.get(action="source.credentials")

    assert ("olga", "source.create") in events and ("olga", "source.credentials") in events
    assert ("olga", "scan.request") in events
    assert ("ada", "public_key.create") in events and ("ada", "public_key.retire") in events
    assert credentials.detail == {"username": "bot", "password": "set"}
    assert "hunter2" not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


def test_a_trust_root_is_never_replaced_in_place() -> None:
    first = make_sigstore("versioned-a").trusted_root_json()
    second = make_sigstore("versioned-b").trusted_root_json()
    trust_services.upload_private_root(name="acme", document=first)

    row = trust_services.upload_private_root(name="acme", document=second)

    versions = list(TrustRootVersion.objects.filter(trust_root=row).order_by("version")
                    .values_list("version", "document"))
    assert row.version == 2 and row.document.encode() == second
    assert versions == [(1, first.decode()), (2, second.decode())]
    assert AuditEvent.objects.filter(action="trust_root.version", object_repr="acme").count() == 1
    assert Reevaluation.objects.filter(detail__contains="acme").exists()


def test_a_key_name_keeps_every_key_it_stood_for() -> None:
    old, new = pem(), pem()
    trust_services.add_public_key(name="release", pem=old)
    trust_services.add_public_key(name="release", pem=new)
    trust_services.retire_public_key(PublicKey.objects.get(name="release"))

    versions = list(PublicKeyVersion.objects.filter(name="release").order_by("version"))

    assert [v.version for v in versions] == [1, 2] and all(v.retired_at is not None for v in versions)
    assert versions[0].pem.encode() != versions[1].pem.encode()
    assert not PublicKey.objects.filter(name="release").exists()
    assert list(AuditEvent.objects.filter(object_type="publickey").order_by("pk").values_list("action", flat=True)) \
        == ["public_key.create", "public_key.version", "public_key.retire"]
    assert Reevaluation.objects.filter(detail="public key release changed").count() == 3  # create, replace, retire


def test_the_trail_is_append_only() -> None:
    user_with_role("viewer", "someone")
    event = AuditEvent.objects.first()
    assert event is not None

    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    if connection.vendor == "postgresql":
        for statement in ("UPDATE accounts_auditevent SET action = 'x'", "DELETE FROM accounts_auditevent"):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(statement)
    assert AuditEvent.objects.filter(pk=event.pk, action=event.action).exists()


def test_the_audit_page_filters_and_the_csv_neutralises_formulas(client: Client) -> None:
    client.force_login(user_with_role("viewer"))
    UserFactory(username="=HYPERLINK(\"http://evil\")", is_superuser=False)

    page = client.get("/audit/?action=user.create")
    exported = client.get("/audit/?format=csv")
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    api = client.get("/api/v1/audit/?action=user.create")

    assert page.status_code == 200 and b"user.create" in page.content
    assert rows[0][:3] == ["at", "actor", "action"]
    assert any(row[5].startswith("'=HYPERLINK") for row in rows[1:])
    assert all(row["action"] == "user.create" for row in api.json()["results"]) and api.json()["results"]


def test_role_changes_are_audited_and_take_effect(client: Client) -> None:
    admin = user_with_role("admin", "root-admin")
    target = user_with_role(None, "newcomer")
    client.force_login(admin)

    answer = client.post("/users/", {"user": target.pk, "role": "operator"})

    assert answer.status_code == 302
    assert AuditEvent.objects.filter(action="user.groups_add", object_repr="newcomer",
                                     detail__groups=["operator"]).exists()
    client.force_login(target)
    assert client.get("/sources/new/").status_code == 200


def test_the_admin_cannot_change_verdicts_evidence_history_or_trust(client: Client) -> None:
    root = trust_root_for(make_sigstore())
    from provenance.sources import services as source_services

    source = source_services.create_source(name="a", kind="image", location="registry.test/a:1", trust_root=root)
    artifact = Artifact.objects.create(source=source, repository="registry.test/a", digest="sha256:" + "0" * 64,
                                       status="untrusted")
    client.force_login(UserFactory(username="staff-super"))  # superuser and staff

    change = client.post(f"/admin/artifacts/artifact/{artifact.pk}/change/", {"status": "verified"})
    add_root = client.get("/admin/trust/trustroot/add/")
    delete_event = client.post(f"/admin/accounts/auditevent/{AuditEvent.objects.first().pk}/delete/", {"post": "yes"})

    assert change.status_code == 403 and Artifact.objects.get(pk=artifact.pk).status == "untrusted"
    assert add_root.status_code == 403 and delete_event.status_code == 403
    assert TrustRoot.objects.filter(name=root.name).count() == 1
