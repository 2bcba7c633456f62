"""Changes to users and their roles are audited wherever they are made (the Users page, the admin, a shell)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_save

from provenance.accounts import services


def _user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login", "password"}:
        if "password" in set(update_fields):
            services.record("user.password", instance)
        return  # a login is not a change
    detail = {"is_active": instance.is_active, "is_staff": instance.is_staff, "is_superuser": instance.is_superuser}
    services.record("user.create" if created else "user.update", instance, detail)


def _groups_changed(sender: Any, instance: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
    if action not in ("post_add", "post_remove", "post_clear") or (action != "post_clear" and not pk_set):
        return
    from django.contrib.auth.models import Group

    names = sorted(Group.objects.filter(pk__in=pk_set or ()).values_list("name", flat=True))
    services.record(f"user.groups_{action.removeprefix('post_')}", instance, {"groups": names})


def connect() -> None:
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="audit-user-saved")
    m2m_changed.connect(_groups_changed, sender=user_model.groups.through, dispatch_uid="audit-user-groups")
