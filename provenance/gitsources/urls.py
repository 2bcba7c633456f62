from django.urls import path

from provenance.gitsources import views

urlpatterns = [
    path("git/", views.git_source_list, name="git-source-list"),
    path("git/new/", views.git_source_new, name="git-source-new"),
    path("git/<int:pk>/", views.git_source_detail, name="git-source-detail"),
    path("git/<int:pk>/fetch/", views.git_source_fetch, name="git-source-fetch"),
    path("git/commits/<int:pk>/", views.git_commit_detail, name="git-commit-detail"),
]
