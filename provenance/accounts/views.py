"""Login, API tokens, users' roles and the audit trail (pages). Each view says which role it needs."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from provenance.accounts import services
from provenance.accounts.backends import is_locked_out
from provenance.accounts.decorators import role_required
from provenance.accounts.forms import RoleForm, TokenForm
from provenance.accounts.models import ApiToken, AuditEvent
from provenance.accounts.roles import Role, has_role, role_of
from provenance.core.exports import safe_cell

AUDIT_PAGE = 200


class LoginView(auth_views.LoginView):
    """Anyone (the only page besides /healthz that needs no login). Failed logins are rate limited."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        if is_locked_out(self.request, self.request.POST.get("username")):
            form.errors.clear()
            form.add_error(None, "Too many failed logins. Try again later.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().form_invalid(form)


@role_required(Role.VIEWER)
def tokens(request: HttpRequest) -> HttpResponse:
    """Viewer and up: one's own API tokens (admins see everyone's); create one (shown once) or revoke one."""
    form = TokenForm()
    created = None
    if request.method == "POST":
        form = TokenForm(request.POST)
        if form.is_valid():
            created = services.create_token(request.user, name=form.cleaned_data["name"],
                                            scope=form.cleaned_data["scope"], days=form.cleaned_data["days"])
            form = TokenForm()
    listed = ApiToken.objects.select_related("user")
    if not has_role(request.user, Role.ADMIN):
        listed = listed.filter(user=request.user)
    context = {"tokens": listed[:500], "form": form, "created": created}
    return render(request, "accounts/tokens.html", context, status=201 if created else 200)


@role_required(Role.VIEWER)
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Viewer and up for one's own tokens; admin for anyone's."""
    token = get_object_or_404(ApiToken, pk=pk)
    if token.user_id != request.user.pk and not has_role(request.user, Role.ADMIN):
        return render(request, "accounts/forbidden.html", {"needed": Role.ADMIN}, status=403)
    services.revoke_token(token)
    return redirect("tokens")


@role_required(Role.ADMIN)
def users(request: HttpRequest) -> HttpResponse:
    """Admin: every user and their role; POST changes one user's role."""
    model = get_user_model()
    if request.method == "POST":
        user = get_object_or_404(model, pk=request.POST.get("user"))
        form = RoleForm(request.POST)
        if form.is_valid():
            role = form.cleaned_data["role"]
            services.set_role(user, Role(role) if role else None)
            return redirect("users")
    rows = [(user, role_of(user)) for user in model.objects.order_by("username").prefetch_related("groups")[:1000]]
    return render(request, "accounts/users.html", {"rows": rows, "roles": list(Role)})


@role_required(Role.VIEWER)
def audit(request: HttpRequest) -> HttpResponse:
    """Viewer and up: the audit trail, newest first, filtered by action or actor; ``?format=csv`` streams it all."""
    events = AuditEvent.objects.all()
    if action := request.GET.get("action", "").strip():
        events = events.filter(action__startswith=action[:60])
    if actor := request.GET.get("actor", "").strip():
        events = events.filter(actor_name=actor[:150])
    if request.GET.get("format") == "csv":
        response = StreamingHttpResponse(_csv_rows(events.iterator(chunk_size=2000)), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="provenance-audit.csv"'
        return response
    return render(request, "accounts/audit.html", {"events": events[:AUDIT_PAGE], "action": action, "actor": actor,
                                                   "limit": AUDIT_PAGE})


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(events: Iterator[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(["at", "actor", "action", "object_type", "object_id", "object", "detail", "ip"])
    for event in events:
        yield writer.writerow([safe_cell(v) for v in (event.at.isoformat(), event.actor_name, event.action,
                                                      event.object_type, event.object_id, event.object_repr,
                                                      event.detail, event.ip or "")])
