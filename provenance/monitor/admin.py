from django.contrib import admin

from provenance.monitor.models import AlertRule, Allowlist, Delivery, Event, LogMatch, MonitoredLog, WatchedIdentity

for model in (AlertRule, Allowlist, Delivery, Event, LogMatch, MonitoredLog, WatchedIdentity):
    admin.site.register(model)
