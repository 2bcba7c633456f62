"""REST API for policies: CRUD through the same services as the pages, plus dry-run, export, verdicts, coverage."""

from __future__ import annotations

from django.http import HttpResponse
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from provenance.accounts.permissions import OperatorWrites
from provenance.artifacts import services as artifact_services
from provenance.core.policy import dump_policy
from provenance.policies import services
from provenance.policies.models import ArtifactTrust, Policy, TrustEvent


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


class PolicyViewSet(viewsets.ModelViewSet):
    """ClusterImagePolicy documents. Writes validate (400 ``policy_invalid``/``rego_invalid`` with the line) and
    re-evaluate the affected artifacts in the background."""

    queryset = Policy.objects.all()
    serializer_class = PolicySerializer
    permission_classes = [OperatorWrites]  # viewer reads; operator writes, dry-runs and re-evaluates

    def perform_create(self, serializer: PolicySerializer) -> None:
        data = serializer.validated_data
        serializer.instance = services.save_policy(data["source"], enabled=data.get("is_enabled", True))

    def perform_update(self, serializer: PolicySerializer) -> None:
        policy = serializer.instance
        data = serializer.validated_data
        serializer.instance = services.save_policy(data.get("source", policy.source), policy=policy,
                                                   enabled=data.get("is_enabled", policy.is_enabled))

    def perform_destroy(self, instance: Policy) -> None:
        services.delete_policy(instance)

    @action(detail=False, methods=["post"], url_path="dry-run", serializer_class=DryRunSerializer)
    def dry_run(self, request: Request) -> Response:
        """Evaluate a draft over the fleet from stored evidence; nothing is saved."""
        serializer = DryRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        report = services.dry_run(data["source"].replace("\r\n", "\n"), replacing=data.get("replacing"),
                                  enabled=data["is_enabled"])
        return Response(report.as_dict())

    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None) -> HttpResponse:
        policy = self.get_object()
        text = dump_policy(services.parse(policy.source)) if request.query_params.get("normalized") else policy.source
        return HttpResponse(text, content_type="application/yaml; charset=utf-8")

    @action(detail=False, methods=["get"], url_path=r"verdicts/(?P<digest>sha(256|384|512):[0-9a-f]+)",
            serializer_class=ArtifactTrustSerializer)
    def verdict(self, request: Request, digest: str) -> Response:
        """An artifact's trust status under the policies, with its history."""
        artifact = artifact_services.find_artifact(digest)
        trust = ArtifactTrust.objects.filter(artifact=artifact).select_related("artifact").first()
        body = ArtifactTrustSerializer(trust).data if trust else {"digest": digest, "status": "pending"}
        body["history"] = TrustEventSerializer(TrustEvent.objects.filter(artifact=artifact)[:200], many=True).data
        return Response(body)

    @action(detail=False, methods=["get"])
    def coverage(self, request: Request) -> Response:
        return Response([c.as_dict() for c in services.coverage()])
