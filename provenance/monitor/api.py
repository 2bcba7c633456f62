"""The monitor's REST API: events (the notifications), followed logs, watched identities, alert rules and their
deliveries. Writes go through the same services as the pages (validated, audited)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from provenance.accounts.permissions import OperatorWrites, ViewerReads
from provenance.api.pagination import KeysetPagination
from provenance.monitor import services
from provenance.monitor.models import AlertRule, Delivery, Event, MonitoredLog, WatchedIdentity
from provenance.sources.models import Source
from provenance.trust.models import TrustRoot


class EventSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    log = serializers.SlugRelatedField(slug_field="name", read_only=True)
    artifact = serializers.CharField(source="artifact.digest", read_only=True, default=None)

    class Meta:
        model = Event
        fields = ["id", "kind", "severity", "title", "detail", "source", "artifact", "log", "policies", "created_at"]
        read_only_fields = fields


class MonitoredLogSerializer(serializers.ModelSerializer):
    trust_root = serializers.SlugRelatedField(slug_field="name", queryset=TrustRoot.objects.all())
    lag = serializers.IntegerField(read_only=True)

    class Meta:
        model = MonitoredLog
        fields = ["id", "name", "kind", "url", "trust_root", "log_id", "is_enabled", "batch_size", "start_index",
                  "next_index", "tree_end", "lag", "checkpoint", "checkpoint_size", "checkpoint_at", "state",
                  "error_code", "error", "failures", "polled_at"]
        read_only_fields = ["next_index", "tree_end", "checkpoint", "checkpoint_size", "checkpoint_at", "state",
                            "error_code", "error", "failures", "polled_at", "is_enabled"]


class WatchedIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = WatchedIdentity
        fields = ["id", "origin", "origin_name", "subject", "subject_regexp", "issuer", "issuer_regexp", "claims",
                  "key_fingerprint", "is_enabled", "created_at"]
        read_only_fields = ["origin", "origin_name", "is_enabled", "created_at"]


class AlertRuleSerializer(serializers.ModelSerializer):
    sources = serializers.SlugRelatedField(slug_field="name", many=True, queryset=Source.objects.all(),
                                           required=False)
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=200)

    class Meta:
        model = AlertRule
        fields = ["id", "name", "channel", "kinds", "sources", "policies", "url", "secret", "emails", "is_enabled",
                  "created_at"]
        read_only_fields = ["created_at"]


class DeliverySerializer(serializers.ModelSerializer):
    rule = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "rule", "event", "state", "attempts", "next_attempt_at", "last_status", "last_error",
                  "delivered_at", "created_at"]
        read_only_fields = fields


def _invalid(err: ValueError) -> serializers.ValidationError:
    return serializers.ValidationError({"detail": str(err)})


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """Viewer: every event, newest first; ``?kind=`` and ``?severity=`` filter."""

    queryset = Event.objects.select_related("source", "log", "artifact")
    serializer_class = EventSerializer
    permission_classes = [ViewerReads]
    pagination_class = KeysetPagination
    filterset_fields = ["kind", "severity", "source", "log"]


class MonitoredLogViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer reads the followed logs (position, lag, last verified checkpoint); an operator adds one."""

    queryset = MonitoredLog.objects.select_related("trust_root")
    serializer_class = MonitoredLogSerializer
    permission_classes = [OperatorWrites]

    def perform_create(self, serializer: MonitoredLogSerializer) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = services.add_log(
                name=data["name"], kind=data.get("kind", MonitoredLog.Kind.REKOR_V1), url=data["url"],
                trust_root=data["trust_root"], log_id=data["log_id"], start_index=data.get("start_index", 0),
                batch_size=data.get("batch_size", 100))
        except ValueError as err:
            raise _invalid(err) from err


class WatchedIdentityViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Viewer reads the watched identities (derived and manual); an operator adds or removes manual ones."""

    queryset = WatchedIdentity.objects.all()
    serializer_class = WatchedIdentitySerializer
    permission_classes = [OperatorWrites]

    def perform_create(self, serializer: WatchedIdentitySerializer) -> None:
        try:
            serializer.instance = services.add_watch(**serializer.validated_data)
        except ValueError as err:
            raise _invalid(err) from err

    def perform_destroy(self, instance: WatchedIdentity) -> None:
        if instance.origin != WatchedIdentity.Origin.MANUAL:
            raise serializers.ValidationError({"detail": "derived from a policy or source: change that instead"})
        services.remove_watch(instance)


class AlertRuleViewSet(viewsets.ModelViewSet):
    """Viewer reads the rules (never their secrets); an operator manages them and sends a test."""

    queryset = AlertRule.objects.prefetch_related("sources")
    serializer_class = AlertRuleSerializer
    permission_classes = [OperatorWrites]

    def _save(self, serializer: AlertRuleSerializer, rule: AlertRule | None) -> None:
        data: dict[str, Any] = dict(serializer.validated_data)
        sources = data.pop("sources", None)
        try:
            serializer.instance = services.save_rule(data, rule=rule, sources=sources)
        except ValueError as err:
            raise _invalid(err) from err

    def perform_create(self, serializer: AlertRuleSerializer) -> None:
        self._save(serializer, None)

    def perform_update(self, serializer: AlertRuleSerializer) -> None:
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance: AlertRule) -> None:
        services.delete_rule(instance)

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"], url_path="test")
    def send_test(self, request: Request, pk: str | None = None) -> Response:
        """Send a test event through this rule now; answers with the delivery (state, status, error)."""
        return Response(DeliverySerializer(services.test_rule(self.get_object())).data)


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Viewer: what was sent where, and what failed (with the error and the next attempt)."""

    queryset = Delivery.objects.select_related("rule")
    serializer_class = DeliverySerializer
    permission_classes = [ViewerReads]
    pagination_class = KeysetPagination
    filterset_fields = ["state", "rule"]
