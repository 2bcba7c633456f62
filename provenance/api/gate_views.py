"""The CI gate and the Kubernetes admission webhook: thin views over :mod:`provenance.policies.gate`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from provenance.accounts.permissions import ViewerAsks, ViewerReads
from provenance.core.errors import MalformedEvidenceError
from provenance.policies import gate


class GateThrottle(UserRateThrottle):
    """Gate answers are cheap reads, asked per CI job and per pod the API server admits: a budget of their own,
    so a busy cluster is not refused by the general API rate."""

    scope = "gate"
    rate = "6000/min"


class PlainTextRenderer(BaseRenderer):
    """``?format=text`` or ``Accept: text/plain``: one line per answer, for ``curl --fail`` in a CI step."""

    media_type = "text/plain"
    format = "text"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict[str, Any] | None = None) -> bytes:
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, dict) and "error" in data:
            return f"error {data['error']}: {data.get('detail', '')}\n".encode()
        return f"{data}\n".encode()


def _wait_seconds(value: str | None) -> float:
    if value in (None, ""):
        return 0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= gate.MAX_WAIT_SECONDS:
        raise MalformedEvidenceError(f"wait must be a number of seconds from 0 to {gate.MAX_WAIT_SECONDS}",
                                     code="wait_invalid")
    return seconds


class CheckView(APIView):
    """May this image run? ``allowed`` is true only when the stored verdict is trusted under every enforcing
    policy that applies (with ``policy=``, under that policy); an image never seen is queued for a scan and
    answered ``pending`` (202). ``format=text``: 200 allowed, 403 denied, 409 pending — for ``curl --fail``."""

    permission_classes = [ViewerReads]  # viewer; a read token is enough
    throttle_classes = [GateThrottle]
    renderer_classes = [JSONRenderer, PlainTextRenderer, BrowsableAPIRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("image", OpenApiTypes.STR, required=True,
                             description="registry/repository:tag or registry/repository@sha256:<hex>"),
            OpenApiParameter("policy", OpenApiTypes.STR, description="answer under this policy only"),
            OpenApiParameter("wait", OpenApiTypes.NUMBER,
                             description=f"seconds (at most {gate.MAX_WAIT_SECONDS}) to wait for a pending verdict"),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "text"]),
        ],
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        decision = gate.check_image(request.query_params.get("image", ""),
                                    policy=request.query_params.get("policy") or None,
                                    wait=_wait_seconds(request.query_params.get("wait")))
        if request.accepted_renderer.format == PlainTextRenderer.format:
            code = 200 if decision.allowed else (409 if decision.pending else 403)
            return Response(decision.as_text(), status=code)
        return Response(decision.as_dict(), status=202 if decision.pending else 200)


class AdmissionView(APIView):
    """A Kubernetes validating admission webhook: takes an ``admission.k8s.io/v1`` AdmissionReview for Pods and
    workload pod templates, answers it (same uid) from the same decision as the CI gate."""

    permission_classes = [ViewerAsks]  # viewer; a read token is enough (the review only asks)
    throttle_classes = [GateThrottle]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        return Response(gate.review_admission(request.data))
