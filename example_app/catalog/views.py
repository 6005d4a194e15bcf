"""Catalog ViewSets. Permissions: reads public, writes need Django model permissions (settings default)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, ProtectedError, QuerySet
from pitchdesk.breakage import is_broken
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from catalog import models as m
from catalog import serializers as s
from catalog.exceptions import Conflict
from catalog.permissions import IsOwnerOrStaffToModify

LOCKED_DETAIL = "pitch is locked: it has votes or comments"


class CatalogViewSet(viewsets.ModelViewSet):
    """ModelViewSet with optional ``?<field>=<id>`` list filters, named in ``filter_fields``."""

    filter_fields: ClassVar[tuple[str, ...]] = ()

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        for field in self.filter_fields:
            value = self.request.query_params.get(field)
            if value is None:
                continue
            if not value.isdigit():
                raise ValidationError({field: [f"Expected an integer id, got {value!r}."]})
            queryset = queryset.filter(**{f"{field}_id": int(value)})
        return queryset


class OwnedViewSet(CatalogViewSet):
    """Rows that belong to the requesting user: the owner is set from the session, never from the body."""

    owner_field: ClassVar[str]
    permission_classes = [permissions.DjangoModelPermissionsOrAnonReadOnly, IsOwnerOrStaffToModify]

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        serializer.save(**{self.owner_field: self.request.user})


class UniverseViewSet(CatalogViewSet):
    queryset = m.Universe.objects.all()
    serializer_class = s.UniverseSerializer


class ProductionViewSet(CatalogViewSet):
    queryset = m.Production.objects.all()
    serializer_class = s.ProductionSerializer
    filter_fields = ("universe",)


class ActorViewSet(CatalogViewSet):
    queryset = m.Actor.objects.all()
    serializer_class = s.ActorSerializer

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        if is_broken("actor_update"):
            # Answer as if saved (the response echoes the new values) but write nothing.
            instance: Model = serializer.instance  # type: ignore[assignment]
            for field, value in serializer.validated_data.items():
                setattr(instance, field, value)
            return
        serializer.save()

    def perform_destroy(self, instance: Model) -> None:
        try:
            instance.delete()
        except ProtectedError as exc:
            raise Conflict("actor still plays characters; delete or recast them first") from exc


class CharacterViewSet(CatalogViewSet):
    queryset = m.Character.objects.all()
    serializer_class = s.CharacterSerializer
    filter_fields = ("production", "played_by")


class EpisodeViewSet(CatalogViewSet):
    queryset = m.Episode.objects.all()
    serializer_class = s.EpisodeSerializer
    filter_fields = ("production",)


class TagCategoryViewSet(CatalogViewSet):
    queryset = m.TagCategory.objects.all()
    serializer_class = s.TagCategorySerializer


class TagViewSet(CatalogViewSet):
    queryset = m.Tag.objects.all()
    serializer_class = s.TagSerializer
    filter_fields = ("category",)

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        if is_broken("tag_create"):
            raise RuntimeError("PITCHDESK_BREAK=tag_create: deliberate failure creating a tag")
        serializer.save()


class PitchViewSet(OwnedViewSet):
    queryset = m.Pitch.objects.prefetch_related("tags")
    serializer_class = s.PitchSerializer
    filter_fields = ("production", "owner")
    owner_field = "owner"

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """PUT and PATCH: owner check (403) first, then the lock (409), then validation (400)."""
        pitch = self.get_object()
        if pitch.is_locked and not is_broken("pitch_lock"):
            raise Conflict(LOCKED_DETAIL)
        return super().update(request, *args, **kwargs)


class VoteViewSet(OwnedViewSet):
    queryset = m.Vote.objects.all()
    serializer_class = s.VoteSerializer
    filter_fields = ("pitch", "user")
    owner_field = "user"


class PitchCommentViewSet(OwnedViewSet):
    queryset = m.PitchComment.objects.all()
    serializer_class = s.PitchCommentSerializer
    filter_fields = ("pitch", "author")
    owner_field = "author"
