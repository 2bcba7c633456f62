from django.urls import path

from provenance.monitor import views

urlpatterns = [
    path("monitor/", views.events, name="monitor-events"),
    path("monitor/logs/", views.logs, name="monitor-logs"),
    path("monitor/logs/<int:pk>/", views.log_detail, name="monitor-log-detail"),
    path("monitor/identities/", views.identities, name="monitor-identities"),
    path("monitor/identities/<int:pk>/delete/", views.identity_delete, name="monitor-identity-delete"),
    path("monitor/allowlist/", views.allowlist, name="monitor-allowlist"),
    path("monitor/allowlist/<int:pk>/delete/", views.allowlist_delete, name="monitor-allowlist-delete"),
    path("monitor/rules/", views.rules, name="monitor-rules"),
    path("monitor/rules/<int:pk>/", views.rule_detail, name="monitor-rule-detail"),
    path("monitor/rules/<int:pk>/delete/", views.rule_delete, name="monitor-rule-delete"),
    path("monitor/rules/<int:pk>/test/", views.rule_test, name="monitor-rule-test"),
]
