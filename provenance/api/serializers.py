from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provenance.accounts.models import ApiToken, AuditEvent
from provenance.artifacts.models import Artifact, Evidence, TagEvent
from provenance.policies.models import ArtifactTrust, Policy, Status, TrustEvent
from provenance.sources.models import Scan, Source
from provenance.trust.models import PublicKey, TrustRoot


class CheckSerializer(serializers.Serializer):
    stage = serializers.CharField()
    code = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField()
    hint = serializers.CharField(allow_blank=True)


class EvidenceSerializer(serializers.ModelSerializer):
    checks = CheckSerializer(many=True)
    verified = serializers.BooleanField(source="is_verified")

    class Meta:
        model = Evidence
        fields = [
            "kind", "format", "location", "digest", "covers_digest", "level", "predicate_type", "outcome",
            "verified", "identity", "issuer", "key", "tlog", "integrated_time", "checks", "verified_at",
        ]


class ArtifactChildSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "digest", "platform", "media_type", "status", "status_code", "status_reason"]


class PolicyVerdictSerializer(serializers.Serializer):
    """An artifact's verdict under the enabled policies (``pending`` until first evaluated)."""

    status = serializers.ChoiceField(choices=Status.choices)
    code = serializers.CharField(allow_blank=True)
    evaluated_at = serializers.DateTimeField(allow_null=True)


_PENDING = {"status": Status.PENDING.value, "code": "", "evaluated_at": None}


class ArtifactSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="artifact-detail", lookup_url_kwarg="key")
    source = serializers.CharField(source="source.name")
    source_id = serializers.IntegerField(read_only=True)
    registry = serializers.CharField(source="source.registry_host", help_text="Empty for an OCI layout.")
    name = serializers.CharField(source="full_name", help_text="`registry/repository` as policies match it.")
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    verified = serializers.SerializerMethodField()
    reason = serializers.CharField(source="status_reason")
    policy = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "id", "url", "digest", "registry", "repository", "name", "source", "source_id", "media_type", "platform",
            "tags", "status", "verified", "status_code", "reason", "checked_at", "policy",
        ]

    def get_verified(self, obj: Artifact) -> bool:
        return obj.status == "verified"

    @extend_schema_field(PolicyVerdictSerializer)
    def get_policy(self, obj: Artifact) -> dict[str, Any]:
        # Lists select the verdict with the artifact (one join); a missing row is an artifact not evaluated yet.
        trust = getattr(obj, "trust", None)
        return dict(_PENDING) if trust is None else PolicyVerdictSerializer(trust).data


class ArtifactDetailSerializer(ArtifactSerializer):
    evidence = EvidenceSerializer(many=True)
    platforms = ArtifactChildSerializer(many=True, source="children")
    parent = serializers.CharField(source="parent.digest", default=None, allow_null=True, read_only=True)

    class Meta(ArtifactSerializer.Meta):
        fields = [*ArtifactSerializer.Meta.fields, "parent", "parent_id", "platforms", "evidence"]


class DigestPlacesSerializer(serializers.Serializer):
    """Every place a digest is found, each with its own verdict."""

    digest = serializers.CharField()
    places = ArtifactSerializer(many=True)


class TagEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TagEvent
        fields = ["repository", "tag", "change", "digest", "previous_digest", "seen_at"]


class ScanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Scan
        fields = ["id", "source", "state", "done", "total", "errors", "fetched", "unchanged", "problems",
                  "error_code", "error", "created_at", "started_at", "finished_at"]


class SourceSerializer(serializers.ModelSerializer):
    trust_root = serializers.SlugRelatedField(slug_field="name", queryset=TrustRoot.objects.all())
    # Credentials go in, never out: the password is stored encrypted and only "has_credentials" is shown.
    username = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=200)
    password = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=4096,
                                     style={"input_type": "password"}, trim_whitespace=False)
    has_credentials = serializers.BooleanField(read_only=True)

    class Meta:
        model = Source
        fields = ["id", "name", "kind", "location", "tag_pattern", "newest", "signature_repository", "is_insecure",
                  "ignore_tlog", "ca_certificates", "trust_root", "expected_identity", "expected_identity_regexp",
                  "expected_issuer", "is_scheduled", "username", "password", "has_credentials", "last_error",
                  "last_scanned_at", "created_at"]
        read_only_fields = ["last_error", "last_scanned_at", "created_at"]


class SigningServiceSerializer(serializers.Serializer):
    kind = serializers.CharField()
    url = serializers.CharField()
    api_version = serializers.IntegerField()
    operator = serializers.CharField(allow_blank=True)


class TrustRootSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrustRoot
        fields = ["name", "kind", "description", "sha256", "tuf_url", "refreshed_at", "refresh_error",
                  "signing_services", "created_at", "updated_at"]

    signing_services = serializers.SerializerMethodField()

    @extend_schema_field(SigningServiceSerializer(many=True))
    def get_signing_services(self, row: TrustRoot) -> list[dict[str, object]]:
        from provenance.trust.services import signing_services

        return [{"kind": s.kind, "url": s.url, "api_version": s.api_version, "operator": s.operator}
                for s in signing_services(row)]


class TufMirrorSerializer(serializers.Serializer):
    """A private deployment from its TUF repository: the mirror's URL and its initial TUF root.json."""

    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    mirror = serializers.URLField()
    root = serializers.CharField(help_text="The repository's initial TUF root.json (its text).",
                                 max_length=1024 * 1024)


class TrustRootUploadSerializer(serializers.Serializer):
    """Upload a private deployment's trusted_root.json: as a file (multipart) or as the JSON text."""

    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    document = serializers.CharField(required=False, help_text="The trusted_root.json text.")
    file = serializers.FileField(required=False, help_text="The trusted_root.json file.")

    def validate(self, attrs: dict) -> dict:
        from provenance.core.trustroot import MAX_TRUST_ROOT_BYTES

        upload = attrs.pop("file", None)
        if upload is not None:
            if upload.size > MAX_TRUST_ROOT_BYTES:
                raise serializers.ValidationError({"file": f"at most {MAX_TRUST_ROOT_BYTES} bytes"})
            attrs["document"] = upload.read()
        elif attrs.get("document"):
            attrs["document"] = attrs["document"].encode()
        else:
            raise serializers.ValidationError({"document": "give the trusted_root.json as document or file"})
        return attrs


class PublicKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = PublicKey
        fields = ["name", "description", "pem", "fingerprint", "algorithm", "created_at"]
        read_only_fields = ["fingerprint", "algorithm", "created_at"]


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "user", "prefix", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=ApiToken.Scope.choices, default=ApiToken.Scope.READ)
    days = serializers.IntegerField(min_value=1, max_value=366, default=90)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "object_type", "object_id", "object_repr", "detail", "ip"]


class PolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = Policy
        fields = ["id", "name", "mode", "is_enabled", "version", "source", "warnings", "parsed", "created_at",
                  "updated_at"]
        read_only_fields = ["name", "mode", "version", "warnings", "parsed", "created_at", "updated_at"]
        extra_kwargs = {"source": {"trim_whitespace": False}}


class DryRunSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=256 * 1024, trim_whitespace=False)
    is_enabled = serializers.BooleanField(default=True)
    replacing = serializers.PrimaryKeyRelatedField(queryset=Policy.objects.all(), required=False, allow_null=True)


class TrustEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrustEvent
        fields = ["at", "cause", "detail", "previous_status", "status", "code", "reason"]


class ArtifactTrustSerializer(serializers.ModelSerializer):
    digest = serializers.CharField(source="artifact.digest")
    repository = serializers.CharField(source="artifact.repository")

    class Meta:
        model = ArtifactTrust
        fields = ["digest", "repository", "status", "code", "reason", "details", "evaluated_at"]


class VerdictSerializer(ArtifactTrustSerializer):
    history = TrustEventSerializer(many=True, help_text="The status changes, newest first (at most 200).")

    class Meta(ArtifactTrustSerializer.Meta):
        fields = [*ArtifactTrustSerializer.Meta.fields, "history"]


# -- shapes of answers that are not a model (for the OpenAPI schema) ----------------------------------------------


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The token itself (`prv_…`): shown this once, never again.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class _FlipSerializer(serializers.Serializer):
    artifact_id = serializers.IntegerField()
    digest = serializers.CharField()
    repository = serializers.CharField()
    platform = serializers.CharField(allow_blank=True)
    before = serializers.CharField()
    after = serializers.CharField()
    code = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)


class _TransitionSerializer(serializers.Serializer):
    # "from" is a Python keyword: declared below.
    to = serializers.CharField()
    count = serializers.IntegerField()


_TransitionSerializer._declared_fields["from"] = serializers.CharField()


class DryRunReportSerializer(serializers.Serializer):
    policy = serializers.CharField()
    warnings = serializers.ListField(child=serializers.CharField())
    total = serializers.IntegerField()
    before = serializers.DictField(child=serializers.IntegerField(), help_text="Artifacts per status now.")
    after = serializers.DictField(child=serializers.IntegerField(), help_text="Artifacts per status with the draft.")
    flip_count = serializers.IntegerField()
    transitions = _TransitionSerializer(many=True)
    flips = _FlipSerializer(many=True)
    seconds = serializers.FloatField()


class CoverageSerializer(serializers.Serializer):
    source = serializers.CharField()
    images = serializers.IntegerField()
    signed = serializers.IntegerField()
    provenance = serializers.IntegerField()
    sbom = serializers.IntegerField()
    unsigned_sbom = serializers.IntegerField()
    unknown_signers = serializers.IntegerField()
    trusted = serializers.IntegerField()
    percent = serializers.DictField(child=serializers.IntegerField())


class ErrorSerializer(serializers.Serializer):
    """Every API error: a stable code and a sentence (a request's invalid fields answer a 400 per field instead)."""

    error = serializers.CharField()
    detail = serializers.CharField()
