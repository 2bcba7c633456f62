from __future__ import annotations

from rest_framework import serializers

from provenance.artifacts.models import Artifact, Evidence
from provenance.sources.models import Scan, Source
from provenance.trust.models import TrustRoot


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


class ScanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Scan
        fields = ["id", "source", "state", "done", "total", "error_code", "error", "created_at", "started_at",
                  "finished_at"]


class SourceSerializer(serializers.ModelSerializer):
    trust_root = serializers.SlugRelatedField(slug_field="name", queryset=TrustRoot.objects.all())

    class Meta:
        model = Source
        fields = ["id", "name", "kind", "location", "is_insecure", "trust_root", "expected_identity",
                  "expected_identity_regexp", "expected_issuer", "last_error", "created_at"]
        read_only_fields = ["last_error", "created_at"]


class TrustRootSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrustRoot
        fields = ["name", "kind", "description", "sha256", "created_at", "updated_at"]
