"""Query filters of the API's lists (django-filter): each one an indexed lookup, a join on a unique key, or an
EXISTS; none runs a query per row. A bad value is a 400 naming the parameter."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField

from provenance.accounts.models import AuditEvent
from provenance.artifacts.models import Artifact, Evidence, TagEvent, TrustStatus
from provenance.core.errors import MalformedEvidenceError
from provenance.core.names import normalize_registry
from provenance.core.types import ImageRef
from provenance.policies.models import Policy, Status
from provenance.sources.models import Scan, Source


class ImageReferenceField(forms.CharField):
    """An image reference, parsed: ``registry/repository:tag`` or ``registry/repository@sha256:…``."""

    def clean(self, value: Any) -> ImageRef | None:
        text = super().clean(value)
        if not text:
            return None
        try:
            return ImageRef.parse(text)
        except MalformedEvidenceError as err:
            # The message quotes the input: passed as a parameter, so a "%" in it is text, not a format.
            raise forms.ValidationError("%(message)s", params={"message": err.message}, code=err.code) from err


class ImageReferenceFilter(filters.CharFilter):
    field_class = ImageReferenceField


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, converted to UTC here: PostgreSQL refuses some offsets Python accepts (beyond ±15:59)."""

    def clean(self, value: Any) -> dt.datetime | None:
        moment = super().clean(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(dt.UTC)
        except OverflowError as err:
            raise forms.ValidationError("a time between the years 1 and 9999", code="invalid") from err


class UtcDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class ArtifactFilter(filters.FilterSet):
    image = ImageReferenceFilter(
        method="filter_image", max_length=600,
        help_text="An image reference: `registry/repository:tag` (the artifact that tag pointed at when last "
                  "scanned) or `registry/repository@sha256:…`. No tag and no digest means `:latest`; resolved "
                  "from stored tags only, the registry is not asked.")
    status = filters.ChoiceFilter(choices=TrustStatus.choices, help_text="The verification status.")
    policy = filters.ChoiceFilter(choices=Status.choices, method="filter_policy",
                                  help_text="The policy verdict (`pending`: not evaluated yet).")
    repository = filters.CharFilter(max_length=500, help_text="The repository, exactly (without the registry).")
    repository_prefix = filters.CharFilter(field_name="repository", lookup_expr="startswith", max_length=500,
                                           help_text="Repositories starting with this.")
    digest = filters.CharFilter(max_length=140, help_text="The digest, exactly.")
    digest_prefix = filters.CharFilter(field_name="digest", lookup_expr="startswith", max_length=140,
                                       help_text="Digests starting with this, e.g. `sha256:4f2a`.")
    tag = filters.CharFilter(field_name="tags__name", max_length=128, help_text="Artifacts a tag points at now.")
    source = filters.ModelChoiceFilter(queryset=Source.objects.all(), help_text="The source's id.")
    signer = filters.CharFilter(method="filter_signer", max_length=500,
                                help_text="Artifacts with verified evidence signed by this identity, exactly "
                                          "(a certificate's subject, e.g. a workflow URL or an e-mail).")
    issuer = filters.CharFilter(method="filter_issuer", max_length=500,
                                help_text="Artifacts with verified evidence whose signer's OIDC issuer is this.")
    predicate_type = filters.CharFilter(method="filter_predicate_type", max_length=300,
                                        help_text="Artifacts with a verified attestation of this predicate type, "
                                                  "exactly (e.g. `https://slsa.dev/provenance/v1`).")
    checked_since = UtcDateTimeFilter(field_name="checked_at", lookup_expr="gte",
                                              help_text="Checked at or after this time (ISO 8601).")
    ordering = filters.OrderingFilter(fields=["checked_at", "repository", "digest", "status", "created_at"],
                                      help_text="Sort order (default `-checked_at`; ties by newest first).")

    class Meta:
        model = Artifact
        fields: list[str] = []

    def filter_image(self, queryset: QuerySet, name: str, ref: ImageRef | None) -> QuerySet:
        if ref is None:
            return queryset
        registry = normalize_registry(ref.registry)  # Docker Hub's aliases are one registry
        sources = [s.pk for s in Source.objects.only("id", "kind", "location")
                   if s.is_registry and normalize_registry(s.registry_host) == registry]
        queryset = queryset.filter(source__in=sources, repository=ref.repository)
        if ref.digest is not None:
            return queryset.filter(digest=str(ref.digest))
        return queryset.filter(tags__name=ref.tag, parent__isnull=True)

    def filter_policy(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == Status.PENDING:
            return queryset.filter(Q(trust__isnull=True) | Q(trust__status=value))
        return queryset.filter(trust__status=value)

    def filter_signer(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Exists(_verified_evidence().filter(identity=value)))

    def filter_issuer(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Exists(_verified_evidence().filter(issuer=value)))

    def filter_predicate_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Exists(_verified_evidence().filter(kind=Evidence.Kind.ATTESTATION,
                                                                  predicate_type=value)))


def _verified_evidence() -> QuerySet:
    return Evidence.objects.filter(artifact=OuterRef("pk"), outcome="verified")


class SourceFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=Source.Kind.choices)
    trust_root = filters.CharFilter(field_name="trust_root__name", max_length=100,
                                    help_text="The trust root's name.")
    is_scheduled = filters.BooleanFilter()
    name_prefix = filters.CharFilter(field_name="name", lookup_expr="startswith", max_length=200)

    class Meta:
        model = Source
        fields: list[str] = []


class ScanFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=Scan.State.choices)
    source = filters.ModelChoiceFilter(queryset=Source.objects.all(), help_text="The source's id.")
    since = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte",
                                      help_text="Asked for at or after this time (ISO 8601).")

    class Meta:
        model = Scan
        fields: list[str] = []


class PolicyFilter(filters.FilterSet):
    mode = filters.ChoiceFilter(choices=Policy.Mode.choices)
    is_enabled = filters.BooleanFilter()
    name = filters.CharFilter(max_length=253)

    class Meta:
        model = Policy
        fields: list[str] = []


class AuditEventFilter(filters.FilterSet):
    action = filters.CharFilter(lookup_expr="startswith", max_length=60,
                                help_text="Actions starting with this, e.g. `source.` or `token.create`.")
    actor = filters.CharFilter(field_name="actor_name", max_length=150, help_text="The actor's username.")
    object_type = filters.CharFilter(max_length=60)
    since = UtcDateTimeFilter(field_name="at", lookup_expr="gte",
                                      help_text="At or after this time (ISO 8601).")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


class TagEventFilter(filters.FilterSet):
    repository = filters.CharFilter(max_length=500)
    tag = filters.CharFilter(max_length=128)

    class Meta:
        model = TagEvent
        fields: list[str] = []
