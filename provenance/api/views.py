from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from provenance.accounts import services as account_services
from provenance.accounts.models import ApiToken, AuditEvent
from provenance.accounts.permissions import AdminWrites, OperatorWrites, ViewerReads, needs
from provenance.accounts.roles import Role, has_role
from provenance.api import filters, serializers
from provenance.api.pagination import KeysetPagination
from provenance.artifacts import services as artifact_services
from provenance.artifacts.models import Artifact, TagEvent
from provenance.core.policy import dump_policy
from provenance.policies import services as policy_services
from provenance.policies.models import ArtifactTrust, Policy, Status, TrustEvent
from provenance.sources import services as source_services
from provenance.sources.models import Scan, Source
from provenance.trust import services as trust_services
from provenance.trust.models import PublicKey, TrustRoot


class ArtifactViewSet(viewsets.ReadOnlyModelViewSet):
    """Viewer: artifacts with their verification status and policy verdict, newest checked first (filters below;
    ``?image=registry/repo:tag`` finds one by reference); one with every piece of evidence and its checks.

    An artifact is a place: (registry, repository, digest). ``/artifacts/<id>/`` is one place.
    ``/artifacts/<digest>/`` answers that place when the digest is found in one place only; found in several, it
    answers 300 with every place (``/digests/<digest>/`` always lists them)."""

    permission_classes = [ViewerReads]
    queryset = (Artifact.objects.select_related("source", "trust").prefetch_related("tags")
                .order_by("-checked_at", "-id"))
    filterset_class = filters.ArtifactFilter
    pagination_class = KeysetPagination
    lookup_url_kwarg = "key"
    lookup_value_regex = r"[0-9]+|sha(256|384|512):[0-9a-f]+"

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return serializers.ArtifactDetailSerializer if self.action == "retrieve" else serializers.ArtifactSerializer

    @extend_schema(
        parameters=[OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH,
                                     pattern=r"^([0-9]+|sha(256|384|512):[0-9a-f]+)$",
                                     description="The artifact's id, or a digest found in one place only.")],
        responses={200: serializers.ArtifactDetailSerializer,
                   300: OpenApiResponse(serializers.DigestPlacesSerializer,
                                        description="The digest is found in several places: each of them.")})
    def retrieve(self, request: Request, *args: object, **kwargs: object) -> Response:
        key = self.kwargs["key"]
        if key.isdigit():
            artifact = artifact_services.find_place(int(key))
        else:
            places = artifact_services.find_places(key)
            if len(places) > 1:
                body = {"error": artifact_services.DigestInSeveralPlacesError.code,
                        "detail": "this digest is found in several places: ask for one by its id",
                        **_digest_places(request, places)}
                return Response(body, status=300)
            artifact = places[0]
        self.check_object_permissions(request, artifact)
        return Response(self.get_serializer(artifact).data)


def _digest_places(request: Request, places: list[Artifact]) -> dict[str, object]:
    rows = serializers.ArtifactSerializer(places, many=True, context={"request": request}).data
    return {"digest": places[0].digest, "places": rows}


class DigestView(APIView):
    """Viewer: every place (registry, repository, digest) a digest is found, each with its own verdict."""

    permission_classes = [ViewerReads]

    @extend_schema(responses=serializers.DigestPlacesSerializer,
                   parameters=[OpenApiParameter("digest", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                pattern=r"^sha(256|384|512):[0-9a-f]+$")])
    def get(self, request: Request, digest: str) -> Response:
        return Response(_digest_places(request, artifact_services.find_places(digest)))


class SourceViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer reads; operator creates sources and asks for scans."""

    permission_classes = [OperatorWrites]
    queryset = Source.objects.select_related("trust_root")
    serializer_class = serializers.SourceSerializer
    filterset_class = filters.SourceFilter

    def perform_create(self, serializer: serializers.SourceSerializer) -> None:
        source = source_services.create_source(**serializer.validated_data)
        serializer.instance = source
        source_services.start_scan(source)

    @extend_schema(request=None, responses={202: serializers.ScanSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def scan(self, request: Request, pk: str | None = None) -> Response:
        """Ask for a scan of this source now (answers the queued scan)."""
        scan = source_services.start_scan(self.get_object())
        return Response(serializers.ScanSerializer(scan).data, status=202)

    @extend_schema(responses=serializers.TagEventSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="tag-history", filterset_class=filters.TagEventFilter,
            pagination_class=KeysetPagination, queryset=TagEvent.objects.order_by("-seen_at", "-id"))
    def tag_history(self, request: Request, pk: str | None = None) -> Response:
        """Which digest each tag pointed at, and when that changed (newest first)."""
        source = get_object_or_404(Source.objects.all(), pk=pk)
        events = self.filter_queryset(self.get_queryset().filter(source=source))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(serializers.TagEventSerializer(page, many=True).data)


class ScanViewSet(viewsets.ReadOnlyModelViewSet):
    """Viewer: scans and their progress, newest first."""

    permission_classes = [ViewerReads]
    queryset = Scan.objects.order_by("-created_at", "-id")
    serializer_class = serializers.ScanSerializer
    filterset_class = filters.ScanFilter
    pagination_class = KeysetPagination


class PolicyViewSet(viewsets.ModelViewSet):
    """ClusterImagePolicy documents. Writes validate (400 ``policy_invalid``/``rego_invalid`` with the line) and
    re-evaluate the affected artifacts in the background."""

    queryset = Policy.objects.all()
    serializer_class = serializers.PolicySerializer
    filterset_class = filters.PolicyFilter
    permission_classes = [OperatorWrites]  # viewer reads; operator writes, dry-runs and re-evaluates

    def perform_create(self, serializer: serializers.PolicySerializer) -> None:
        data = serializer.validated_data
        serializer.instance = policy_services.save_policy(data["source"], enabled=data.get("is_enabled", True))

    def perform_update(self, serializer: serializers.PolicySerializer) -> None:
        policy = serializer.instance
        data = serializer.validated_data
        serializer.instance = policy_services.save_policy(data.get("source", policy.source), policy=policy,
                                                          enabled=data.get("is_enabled", policy.is_enabled))

    def perform_destroy(self, instance: Policy) -> None:
        policy_services.delete_policy(instance)

    @extend_schema(request=serializers.DryRunSerializer, responses=serializers.DryRunReportSerializer)
    @action(detail=False, methods=["post"], url_path="dry-run", serializer_class=serializers.DryRunSerializer,
            filterset_class=None)
    def dry_run(self, request: Request) -> Response:
        """Evaluate a draft over the fleet from stored evidence; nothing is saved."""
        serializer = serializers.DryRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        report = policy_services.dry_run(data["source"].replace("\r\n", "\n"), replacing=data.get("replacing"),
                                         enabled=data["is_enabled"])
        return Response(report.as_dict())

    @extend_schema(
        parameters=[OpenApiParameter("normalized", OpenApiTypes.BOOL, description="Normalized, not as imported.")],
        responses={(200, "application/yaml"): OpenApiResponse(OpenApiTypes.OBJECT, description="The YAML.")})
    @action(detail=True, methods=["get"], filterset_class=None)
    def export(self, request: Request, pk: str | None = None) -> HttpResponse:
        policy = self.get_object()
        text = policy.source
        if request.query_params.get("normalized"):
            text = dump_policy(policy_services.parse(policy.source))
        return HttpResponse(text, content_type="application/yaml; charset=utf-8")

    @extend_schema(responses=serializers.VerdictSerializer,
                   parameters=[OpenApiParameter("digest", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                pattern=r"^sha(256|384|512):[0-9a-f]+$"),
                               OpenApiParameter("place", OpenApiTypes.INT, description=(
                                   "The artifact's id: needed when the digest is found in several places "
                                   "(else 400 `digest_in_several_places`)."))])
    @action(detail=False, methods=["get"], url_path=r"verdicts/(?P<digest>sha(256|384|512):[0-9a-f]+)",
            serializer_class=serializers.VerdictSerializer, filterset_class=None, pagination_class=None)
    def verdict(self, request: Request, digest: str) -> Response:
        """An artifact's (one place's) trust status under the policies, with its history."""
        artifact = artifact_services.find_artifact(digest, place=request.query_params.get("place"))
        trust = ArtifactTrust.objects.filter(artifact=artifact).select_related("artifact").first()
        if trust is None:  # not evaluated yet: the same shape, pending
            trust = ArtifactTrust(artifact=artifact, status=Status.PENDING)
        body = dict(serializers.ArtifactTrustSerializer(trust).data)
        history = TrustEvent.objects.filter(artifact=artifact)[:200]
        body["history"] = serializers.TrustEventSerializer(history, many=True).data
        return Response(body)

    @extend_schema(responses=serializers.CoverageSerializer(many=True))
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def coverage(self, request: Request) -> Response:
        """Per source: how many images are signed, have provenance or an SBOM, and are trusted."""
        return Response([c.as_dict() for c in policy_services.coverage()])


class TrustRootViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer reads; admin uploads a private deployment's trusted_root.json (validated: a bad one is a 400), sets
    one up from a TUF mirror, or refreshes one."""

    permission_classes = [AdminWrites]

    queryset = TrustRoot.objects.all()
    serializer_class = serializers.TrustRootSerializer
    lookup_field = "name"

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return {"create": serializers.TrustRootUploadSerializer,
                "initialize": serializers.TufMirrorSerializer}.get(self.action, serializers.TrustRootSerializer)

    @extend_schema(request={"application/json": serializers.TrustRootUploadSerializer,
                            "multipart/form-data": serializers.TrustRootUploadSerializer},
                   responses={201: serializers.TrustRootSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        upload = serializers.TrustRootUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        row = trust_services.upload_private_root(**upload.validated_data)
        return Response(serializers.TrustRootSerializer(row).data, status=201)

    @extend_schema(request=serializers.TufMirrorSerializer, responses={201: serializers.TrustRootSerializer})
    @action(detail=False, methods=["post"])
    def initialize(self, request: Request) -> Response:
        """Set up a private deployment's root from its TUF mirror and root.json (``cosign initialize``)."""
        data = serializers.TufMirrorSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        row = trust_services.initialize_from_tuf(name=fields["name"], mirror=fields["mirror"],
                                                 root=fields["root"].encode(), description=fields["description"])
        return Response(serializers.TrustRootSerializer(row).data, status=201)

    @extend_schema(request=None, responses={200: serializers.TrustRootSerializer, 409: OpenApiResponse(
        serializers.ErrorSerializer, description="Refreshing over TUF is turned off (`tuf_disabled`).")})
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, name: str | None = None) -> Response:
        """Refresh this root from its TUF repository now; a failure is stored on the root (the old one stays).
        Answers 409 ``tuf_disabled`` when refreshing over TUF is turned off (PROVENANCE_SIGSTORE_TUF=0)."""
        row_id = self.get_object().pk
        try:
            trust_services.check_tuf_enabled()
        except trust_services.TufDisabledError as err:
            return Response({"error": err.code, "detail": err.message}, status=409)
        row = trust_services.refresh_from_tuf(row_id)
        return Response(serializers.TrustRootSerializer(row).data)


class PublicKeyViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer reads; admin adds (the PEM is validated: a bad one is a 400) or retires named public keys trusted
    for key-based signatures."""

    permission_classes = [AdminWrites]

    queryset = PublicKey.objects.all()
    serializer_class = serializers.PublicKeySerializer
    lookup_field = "name"

    def perform_create(self, serializer: serializers.PublicKeySerializer) -> None:
        data = serializer.validated_data
        serializer.instance = trust_services.add_public_key(name=data["name"], pem=data["pem"].encode(),
                                                            description=data.get("description", ""))

    def perform_destroy(self, instance: PublicKey) -> None:
        trust_services.retire_public_key(instance)


class ApiTokenViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer and up: one's own API tokens (admin: everyone's). POST creates one and answers its secret once;
    DELETE revokes (the row stays, with its revocation time)."""

    serializer_class = serializers.ApiTokenSerializer
    permission_classes = [needs(read=Role.VIEWER, write=Role.VIEWER)]
    queryset = ApiToken.objects.select_related("user")

    def get_queryset(self):  # type: ignore[no-untyped-def]
        tokens = super().get_queryset()
        return tokens if has_role(self.request.user, Role.ADMIN) else tokens.filter(user=self.request.user)

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return serializers.ApiTokenCreateSerializer if self.action == "create" else serializers.ApiTokenSerializer

    @extend_schema(request=serializers.ApiTokenCreateSerializer,
                   responses={201: serializers.ApiTokenCreatedSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        data = serializers.ApiTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = account_services.create_token(request.user, **data.validated_data)
        body = {**serializers.ApiTokenSerializer(created.token).data, "token": created.secret}
        return Response(body, status=201)

    def perform_destroy(self, instance: ApiToken) -> None:
        account_services.revoke_token(instance)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Viewer: the audit trail, newest first (``?action=`` prefix, ``?actor=``, ``?since=``); the page offers CSV."""

    serializer_class = serializers.AuditEventSerializer
    permission_classes = [ViewerReads]
    queryset = AuditEvent.objects.order_by("-at", "-id")
    filterset_class = filters.AuditEventFilter
    pagination_class = KeysetPagination
