"""Object-level rule shared by pitches, votes and comments: only their author (or staff) changes them."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView


class IsOwnerOrStaffToModify(permissions.BasePermission):
    """Unsafe methods on an object need ``obj.<view.owner_field> == request.user`` or ``is_staff``.

    Combined with DjangoModelPermissionsOrAnonReadOnly: that one decides whether the user may touch the
    model at all, this one whether they may touch this row.
    """

    message = "Only the owner (or staff) may modify this object."

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        owner_id = getattr(obj, f"{view.owner_field}_id")  # type: ignore[attr-defined]
        return bool(request.user.is_staff) or owner_id == request.user.pk
