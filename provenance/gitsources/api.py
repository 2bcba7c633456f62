"""The git sources' REST API: repositories (operators create and fetch them) and their commits with verdicts."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from provenance.accounts.permissions import OperatorWrites, ViewerReads
from provenance.core.errors import MalformedEvidenceError
from provenance.gitsources import services
from provenance.gitsources.models import Commit, GitFetch, GitSource


class GitFetchSerializer(serializers.ModelSerializer):
    class Meta:
        model = GitFetch
        fields = ["id", "source", "state", "commits_seen", "commits_new", "error_code", "error", "created_at",
                  "started_at", "finished_at"]


class GitSourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = GitSource
        fields = ["id", "name", "location", "branches", "tag_pattern", "max_commits", "since", "protected_refs",
                  "trust_root", "expected_identity", "expected_identity_regexp", "expected_issuer",
                  "allowed_signers", "is_scheduled", "is_shallow", "warning", "last_error", "last_fetched_at",
                  "created_at"]
        read_only_fields = ["is_shallow", "warning", "last_error", "last_fetched_at", "created_at"]


class CommitSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True)

    class Meta:
        model = Commit
        fields = ["id", "source", "source_name", "sha", "subject", "parents", "author_name", "author_email",
                  "authored_at", "committer_name", "committer_email", "committed_at", "refs", "signature_kind",
                  "status", "signer_identity", "signer_issuer", "signer_key", "log_status", "log_index",
                  "integrated_time", "signing_time", "reason", "checks", "verified_at"]


class GitSourceViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer reads; operator adds repositories and asks for fetches."""

    permission_classes = [OperatorWrites]
    queryset = GitSource.objects.select_related("trust_root").order_by("name")
    serializer_class = GitSourceSerializer

    def perform_create(self, serializer: GitSourceSerializer) -> None:
        try:
            source = services.create_git_source(**serializer.validated_data)
        except MalformedEvidenceError as err:
            raise serializers.ValidationError({"location": [err.message]}) from err
        serializer.instance = source
        services.start_fetch(source)

    @extend_schema(request=None, responses={202: GitFetchSerializer})
    @action(detail=True, methods=["post"])
    def fetch(self, request: Request, pk: str | None = None) -> Response:
        """Fetch this repository now and check its new commits (answers the queued fetch)."""
        fetch = services.start_fetch(self.get_object())
        return Response(GitFetchSerializer(fetch).data, status=202)


class CommitViewSet(viewsets.ReadOnlyModelViewSet):
    """Viewer: commits with their signature verdicts; ``?source=ID``, ``?sha=``, ``?status=``, ``?signer=``."""

    permission_classes = [ViewerReads]
    queryset = Commit.objects.select_related("source").defer("raw").order_by("-committed_at", "-id")
    serializer_class = CommitSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = super().get_queryset()
        params = self.request.query_params
        if params.get("source", "").isdigit():
            queryset = queryset.filter(source_id=int(params["source"]))
        if params.get("sha"):
            queryset = queryset.filter(sha=params["sha"].lower()[:40])
        if params.get("status"):
            queryset = queryset.filter(status=params["status"][:20])
        if params.get("signer"):
            queryset = queryset.filter(signer_identity=params["signer"][:500])
        return queryset
