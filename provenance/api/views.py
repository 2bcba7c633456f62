from __future__ import annotations

from django.http import Http404
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from provenance.api import serializers
from provenance.artifacts import services as artifact_services
from provenance.artifacts.models import Artifact
from provenance.core.errors import MalformedEvidenceError
from provenance.sources import services as source_services
from provenance.sources.models import Scan, Source
from provenance.trust.models import TrustRoot


class ArtifactViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Artifact.objects.select_related("source").prefetch_related("tags").order_by("repository", "digest")
    lookup_field = "digest"
    lookup_value_regex = r"sha(256|384|512):[0-9a-f]+"

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return serializers.ArtifactDetailSerializer if self.action == "retrieve" else serializers.ArtifactSerializer

    def get_object(self) -> Artifact:
        try:
            artifact = artifact_services.find_artifact(self.kwargs["digest"])
        except MalformedEvidenceError as err:
            raise Http404(err.message) from err
        if artifact is None:
            raise Http404("no artifact with this digest")
        return artifact


class SourceViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Source.objects.select_related("trust_root")
    serializer_class = serializers.SourceSerializer

    def perform_create(self, serializer: serializers.SourceSerializer) -> None:
        source = source_services.create_source(**serializer.validated_data)
        serializer.instance = source
        source_services.start_scan(source)

    @action(detail=True, methods=["post"])
    def scan(self, request: Request, pk: str | None = None) -> Response:
        scan = source_services.start_scan(self.get_object())
        return Response(serializers.ScanSerializer(scan).data, status=202)


class ScanViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Scan.objects.all()
    serializer_class = serializers.ScanSerializer


class TrustRootViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = TrustRoot.objects.all()
    serializer_class = serializers.TrustRootSerializer
    lookup_field = "name"
