"""URL map: the API lives under /api/ with trailing slashes; the HTML login form at /accounts/login/."""

from accounts.views import CsrfView, LoginView, LogoutView, MeView, UserViewSet
from catalog import views as catalog
from django.contrib.auth import views as auth_views
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from pitchdesk.views import health

router = DefaultRouter(trailing_slash=True)
router.register("users", UserViewSet)
router.register("universes", catalog.UniverseViewSet)
router.register("productions", catalog.ProductionViewSet)
router.register("actors", catalog.ActorViewSet)
router.register("characters", catalog.CharacterViewSet)
router.register("episodes", catalog.EpisodeViewSet)
router.register("tag-categories", catalog.TagCategoryViewSet)
router.register("tags", catalog.TagViewSet)
router.register("pitches", catalog.PitchViewSet)
router.register("votes", catalog.VoteViewSet)
router.register("pitch-comments", catalog.PitchCommentViewSet)

urlpatterns = [
    path("api/health/", health, name="health"),
    path("api/auth/csrf/", CsrfView.as_view(), name="auth-csrf"),
    path("api/auth/login/", LoginView.as_view(), name="auth-login"),
    path("api/auth/logout/", LogoutView.as_view(), name="auth-logout"),
    path("api/auth/me/", MeView.as_view(), name="auth-me"),
    path("api/", include(router.urls)),
    # A classic HTML login form (browsers; session_login(..., form=True) in the flows).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
]

handler400 = "rest_framework.exceptions.bad_request"
handler404 = "pitchdesk.views.not_found"
handler500 = "rest_framework.exceptions.server_error"
