"""Users resource and the session-auth endpoints (csrf, login, logout, me)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from rest_framework import permissions, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.serializers import LoginSerializer, SessionUserSerializer, UserSerializer


class ReadAuthenticatedWriteStaff(permissions.BasePermission):
    """Any logged-in user may read users; only staff may create, change or delete them."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or bool(request.user.is_staff)


class UserViewSet(viewsets.ModelViewSet):
    queryset = User.objects.all()
    serializer_class = UserSerializer
    permission_classes = [ReadAuthenticatedWriteStaff]


@method_decorator(ensure_csrf_cookie, name="dispatch")
class CsrfView(APIView):
    """Hands out a CSRF token (body) and sets the ``csrftoken`` cookie, before login."""

    permission_classes = [permissions.AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"csrfToken": get_token(request._request)})


class LoginView(APIView):
    """Session login. CSRF is enforced even though the caller is still anonymous (DRF alone would not)."""

    permission_classes = [permissions.AllowAny]

    def post(self, request: Request) -> Response:
        SessionAuthentication().enforce_csrf(request)  # raises PermissionDenied -> 403
        form = LoginSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = authenticate(request._request, **form.validated_data)
        if user is None:
            return Response({"detail": "invalid username or password"}, status=status.HTTP_400_BAD_REQUEST)
        login(request._request, user)  # rotates the CSRF token: the response sets a new csrftoken cookie
        body: dict[str, Any] = dict(SessionUserSerializer(user).data)
        body["csrfToken"] = get_token(request._request)
        return Response(body)


class LogoutView(APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(SessionUserSerializer(request.user).data)
