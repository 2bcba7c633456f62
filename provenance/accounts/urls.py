from django.contrib.auth import views as auth_views
from django.urls import path

from provenance.accounts import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("users/", views.users, name="users"),
    path("audit/", views.audit, name="audit"),
]
