"""What each API endpoint needs: a role for reading and a role for changing, and a token scope that allows it."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from provenance.accounts.models import ApiToken
from provenance.accounts.roles import Role, has_role


class RolePermission(permissions.BasePermission):
    """Safe methods need ``read``, the rest ``write``; a read-scoped token never writes.

    Declared per view as ``permission_classes = [needs(read=Role.VIEWER, write=Role.OPERATOR)]``.
    """

    read: Role = Role.VIEWER
    write: Role = Role.ADMIN
    question = False  # a POST that only asks (an AdmissionReview) counts as a read
    message = "your role does not allow this"
    code = "permission_denied"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401 with WWW-Authenticate
        safe = request.method in permissions.SAFE_METHODS or self.question
        if not safe and isinstance(request.auth, ApiToken) and request.auth.scope != ApiToken.Scope.WRITE:
            self.message = "this token is read-only (scope read)"
            self.code = "token_scope"
            return False
        return has_role(request.user, self.read if safe else self.write)


def needs(*, read: Role = Role.VIEWER, write: Role = Role.ADMIN) -> type[RolePermission]:
    return type(f"Needs_{read}_{write}", (RolePermission,), {"read": read, "write": write})


AdminOnly = needs(read=Role.ADMIN, write=Role.ADMIN)  # the default for a view that declares nothing
ViewerReads = needs(read=Role.VIEWER, write=Role.ADMIN)  # read-only endpoints: writes never reach them
OperatorWrites = needs(read=Role.VIEWER, write=Role.OPERATOR)
AdminWrites = needs(read=Role.VIEWER, write=Role.ADMIN)
ViewerAsks = type("ViewerAsks", (RolePermission,), {"read": Role.VIEWER, "write": Role.VIEWER, "question": True})
