"""What each page needs: ``@role_required(Role.VIEWER)``. Anonymous users go to the login page; a user without
the role gets a 403 page that says which role is missing."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from provenance.accounts.roles import Role, has_role

View = Callable[..., HttpResponse]


def role_required(role: Role, *, write: Role | None = None) -> Callable[[View], View]:
    """GET/HEAD need ``role``; other methods need ``write`` (default: ``role``)."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            needed = role if request.method in ("GET", "HEAD", "OPTIONS") else (write or role)
            if not has_role(request.user, needed):
                return render(request, "accounts/forbidden.html", {"needed": needed}, status=403)
            return view(request, *args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        wrapper.required_write_role = write or role  # type: ignore[attr-defined]
        return wrapper

    return decorator
