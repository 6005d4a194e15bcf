"""Serializers: every relation is written and read as a plain id (``PrimaryKeyRelatedField``)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from catalog.models import (
    Actor,
    Character,
    Episode,
    Pitch,
    PitchComment,
    Production,
    Tag,
    TagCategory,
    Universe,
    Vote,
)


class UniverseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Universe
        fields = ["id", "name", "description"]


class ProductionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Production
        fields = ["id", "universe", "title", "kind", "release_year"]


class ActorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Actor
        fields = ["id", "name", "birth_year"]


class CharacterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Character
        fields = ["id", "production", "name", "played_by"]


class EpisodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Episode
        fields = ["id", "production", "number", "title"]


class TagCategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = TagCategory
        fields = ["id", "name"]


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "category", "name"]


class PitchSerializer(serializers.ModelSerializer):
    is_locked = serializers.BooleanField(read_only=True)

    class Meta:
        model = Pitch
        fields = ["id", "owner", "production", "title", "logline", "tags", "is_locked", "created_at"]
        read_only_fields = ["owner", "created_at"]


class VoteSerializer(serializers.ModelSerializer):
    """``user`` comes from the session; the one-vote rule is checked here to give a 400, not a 500."""

    class Meta:
        model = Vote
        fields = ["id", "user", "pitch", "value", "created_at"]
        read_only_fields = ["user", "created_at"]
        # The model constraint involves the read-only ``user``; validate() below replaces DRF's version.
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context["request"]
        user = self.instance.user if self.instance else request.user
        pitch = attrs.get("pitch", self.instance.pitch if self.instance else None)
        duplicates = Vote.objects.filter(user=user, pitch=pitch)
        if self.instance is not None:
            duplicates = duplicates.exclude(pk=self.instance.pk)
        if duplicates.exists():
            # Raised from validate(), so it lands in "non_field_errors".
            raise serializers.ValidationError("You have already voted on this pitch.", code="unique")
        return attrs


class PitchCommentSerializer(serializers.ModelSerializer):
    class Meta:
        model = PitchComment
        fields = ["id", "author", "pitch", "body", "created_at"]
        read_only_fields = ["author", "created_at"]
