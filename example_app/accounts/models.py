"""The custom user: set from migration 0001 so the project never has to swap user models later."""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A platform user; ``role`` is informational, permissions come from groups."""

    class Role(models.TextChoices):
        VIEWER = "viewer"
        WRITER = "writer"
        PRODUCER = "producer"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        ordering = ["id"]
