"""The pitching domain: a catalog of universes/productions/people/tags, and pitches users vote on.

Deletes cascade down the ownership tree (universe -> production -> characters/episodes/pitches ->
votes/comments; tag category -> tags). An actor who still plays a character is protected instead.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class Universe(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Production(models.Model):
    class Kind(models.TextChoices):
        FILM = "film"
        SERIES = "series"

    universe = models.ForeignKey(Universe, on_delete=models.CASCADE, related_name="productions")
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FILM)
    release_year = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title


class Actor(models.Model):
    name = models.CharField(max_length=200)
    birth_year = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Character(models.Model):
    production = models.ForeignKey(Production, on_delete=models.CASCADE, related_name="characters")
    name = models.CharField(max_length=200)
    played_by = models.ForeignKey(Actor, on_delete=models.PROTECT, related_name="characters")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Episode(models.Model):
    production = models.ForeignKey(Production, on_delete=models.CASCADE, related_name="episodes")
    number = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    title = models.CharField(max_length=200)

    class Meta:
        ordering = ["production_id", "number"]
        unique_together = [("production", "number")]

    def __str__(self) -> str:
        return f"{self.production_id}#{self.number} {self.title}"


class TagCategory(models.Model):
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "tag categories"

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    category = models.ForeignKey(TagCategory, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["id"]
        unique_together = [("category", "name")]

    def __str__(self) -> str:
        return self.name


class Pitch(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pitches")
    production = models.ForeignKey(Production, on_delete=models.CASCADE, related_name="pitches")
    title = models.CharField(max_length=200)
    logline = models.TextField()
    tags = models.ManyToManyField(Tag, blank=True, related_name="pitches")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "pitches"

    def __str__(self) -> str:
        return self.title

    @property
    def is_locked(self) -> bool:
        """A pitch people have reacted to may no longer change under them."""
        return self.votes.exists() or self.comments.exists()


class Vote(models.Model):
    class Value(models.IntegerChoices):
        DOWN = -1
        UP = 1

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="votes")
    pitch = models.ForeignKey(Pitch, on_delete=models.CASCADE, related_name="votes")
    value = models.SmallIntegerField(choices=Value.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["user", "pitch"], name="one_vote_per_user_and_pitch")]


class PitchComment(models.Model):
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comments")
    pitch = models.ForeignKey(Pitch, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
