from __future__ import annotations

from rest_framework import serializers

from provenance.accounts.models import ApiToken, AuditEvent
from provenance.artifacts.models import Artifact, Evidence, TagEvent
from provenance.policies.models import ArtifactTrust, Policy, TrustEvent
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
        fields = ["digest", "platform", "media_type", "status", "status_code", "status_reason"]


class ArtifactSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source.name")
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    verified = serializers.SerializerMethodField()
    reason = serializers.CharField(source="status_reason")

    class Meta:
        model = Artifact
        fields = [
            "digest", "repository", "source", "media_type", "platform", "tags", "status", "verified",
            "status_code", "reason", "checked_at",
        ]

    def get_verified(self, obj: Artifact) -> bool:
        return obj.status == "verified"


class ArtifactDetailSerializer(ArtifactSerializer):
    evidence = EvidenceSerializer(many=True)
    platforms = ArtifactChildSerializer(many=True, source="children")
    parent = serializers.CharField(source="parent.digest", default=None)

    class Meta(ArtifactSerializer.Meta):
        fields = [*ArtifactSerializer.Meta.fields, "parent", "platforms", "evidence"]


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


class TrustRootSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrustRoot
        fields = ["name", "kind", "description", "sha256", "tuf_url", "refreshed_at", "refresh_error",
                  "signing_services", "created_at", "updated_at"]

    signing_services = serializers.SerializerMethodField()

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
