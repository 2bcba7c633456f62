from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.core.errors import ProvenanceError
from provenance.monitor import services
from provenance.monitor.forms import AllowlistForm, LogForm, RuleForm, WatchForm
from provenance.monitor.models import AlertRule, Allowlist, Delivery, Event, LogMatch, MonitoredLog, WatchedIdentity
from provenance.sources.models import Source


@role_required(Role.VIEWER)
def events(request: HttpRequest) -> HttpResponse:
    """The notifications: every event, newest first, filtered by kind, severity, source or log."""
    rows = Event.objects.select_related("source", "log", "artifact").prefetch_related("deliveries")
    filters = {k: request.GET.get(k, "") for k in ("kind", "severity", "source", "log")}
    if filters["kind"]:
        rows = rows.filter(kind=filters["kind"])
    if filters["severity"]:
        rows = rows.filter(severity=filters["severity"])
    if filters["source"].isdigit():
        rows = rows.filter(source_id=int(filters["source"]))
    if filters["log"].isdigit():
        rows = rows.filter(log_id=int(filters["log"]))
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    context = {"page": page, "filters": filters, "kinds": Event.Kind.choices, "severities": Event.Severity.choices,
               "sources": Source.objects.all(), "logs": MonitoredLog.objects.all()}
    if request.htmx:
        return render(request, "monitor/events.html#event-table", context)
    return render(request, "monitor/events.html", context)


@role_required(Role.VIEWER, write=Role.OPERATOR)
def logs(request: HttpRequest) -> HttpResponse:
    form = LogForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            row = services.add_log(**form.cleaned_data)
        except (ValueError, ProvenanceError) as err:
            form.add_error(None, str(err))
        else:
            return redirect("monitor-log-detail", pk=row.pk)
    return render(request, "monitor/logs.html", {"logs": MonitoredLog.objects.select_related("trust_root"),
                                                 "form": form})


@role_required(Role.VIEWER, write=Role.OPERATOR)
def log_detail(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(MonitoredLog.objects.select_related("trust_root"), pk=pk)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "reset":
            services.reset_log(row)
        elif action in ("enable", "disable"):
            services.set_log_enabled(row, action == "enable")
        return redirect("monitor-log-detail", pk=pk)
    context = {"log": row, "matches": LogMatch.objects.filter(log=row).select_related("watched", "artifact")[:50],
               "events": Event.objects.filter(log=row)[:20]}
    return render(request, "monitor/log_detail.html", context)


@role_required(Role.VIEWER, write=Role.OPERATOR)
def identities(request: HttpRequest) -> HttpResponse:
    form = WatchForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.add_watch(**form.values())
        except ValueError as err:
            form.add_error(None, str(err))
        else:
            return redirect("monitor-identities")
    elif request.method == "GET":
        services.sync_watches()
    watched = list(WatchedIdentity.objects.all())
    recent: dict[int, list[LogMatch]] = {w.pk: [] for w in watched}
    for match in LogMatch.objects.filter(watched__in=watched).select_related("log", "artifact")[:500]:
        if match.watched_id is not None and len(recent[match.watched_id]) < 5:
            recent[match.watched_id].append(match)
    context = {"rows": [(w, recent[w.pk]) for w in watched], "form": form}
    return render(request, "monitor/identities.html", context)


@role_required(Role.OPERATOR)
@require_POST
def identity_delete(request: HttpRequest, pk: int) -> HttpResponse:
    services.remove_watch(get_object_or_404(WatchedIdentity, pk=pk, origin=WatchedIdentity.Origin.MANUAL))
    return redirect("monitor-identities")


@role_required(Role.VIEWER, write=Role.OPERATOR)
def allowlist(request: HttpRequest) -> HttpResponse:
    form = AllowlistForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.add_allowlist(**form.cleaned_data)
        except ValueError as err:
            form.add_error(None, str(err))
        else:
            return redirect("monitor-allowlist")
    return render(request, "monitor/allowlist.html", {"items": Allowlist.objects.all(), "form": form})


@role_required(Role.OPERATOR)
@require_POST
def allowlist_delete(request: HttpRequest, pk: int) -> HttpResponse:
    services.remove_allowlist(get_object_or_404(Allowlist, pk=pk))
    return redirect("monitor-allowlist")


@role_required(Role.VIEWER, write=Role.OPERATOR)
def rules(request: HttpRequest) -> HttpResponse:
    return _rule_form(request, None)


@role_required(Role.VIEWER, write=Role.OPERATOR)
def rule_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _rule_form(request, get_object_or_404(AlertRule, pk=pk))


def _rule_form(request: HttpRequest, rule: AlertRule | None) -> HttpResponse:
    initial = {}
    if rule is not None:
        initial = {"name": rule.name, "channel": rule.channel, "kinds": rule.kinds, "sources": rule.sources.all(),
                   "policies": ", ".join(rule.policies), "url": rule.url, "emails": rule.emails,
                   "is_enabled": rule.is_enabled}
    form = RuleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.save_rule(form.values(), rule=rule, sources=form.cleaned_data.get("sources") or [])
        except ValueError as err:
            form.add_error(None, str(err))
        else:
            return redirect("monitor-rule-detail", pk=saved.pk)
    deliveries = Delivery.objects.select_related("event", "rule")
    if rule is not None:
        deliveries = deliveries.filter(rule=rule)
    context = {"rule": rule, "form": form, "rules": AlertRule.objects.prefetch_related("sources"),
               "deliveries": deliveries[:50]}
    return render(request, "monitor/rules.html", context)


@role_required(Role.OPERATOR)
@require_POST
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    services.delete_rule(get_object_or_404(AlertRule, pk=pk))
    return redirect("monitor-rules")


@role_required(Role.OPERATOR)
@require_POST
def rule_test(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk)
    delivery = services.test_rule(rule)
    if request.htmx:
        return render(request, "monitor/_delivery.html", {"delivery": delivery})
    return redirect("monitor-rule-detail", pk=pk)
