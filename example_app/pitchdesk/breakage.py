"""Deliberate breakage, switched on by ``PITCHDESK_BREAK=name[,name...]``.

Exists so the plugin's own tests can watch real failures (a 500, a change that silently does not
persist, an app that never becomes ready) and check how they are reported. Default: nothing broken.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KNOWN = {
    "actor_update": "PUT/PATCH /api/actors/{id}/ answers 200 with the new values but does not save them",
    "tag_create": "POST /api/tags/ raises an exception -> 500",
    "pitch_lock": "the pitch lock is not enforced: PUT/PATCH of a pitch with votes/comments -> 200",
    "health": "GET /api/health/ answers 503, so the app never becomes ready",
    "startup": "the app raises ImproperlyConfigured while loading settings, so it exits at once",
}


def parse(env: Mapping[str, str]) -> frozenset[str]:
    """Names from the environment; an unknown name is a startup error, so a typo cannot pass silently."""
    names = frozenset(n.strip() for n in env.get("PITCHDESK_BREAK", "").split(",") if n.strip())
    unknown = sorted(names - KNOWN.keys())
    if unknown:
        raise ImproperlyConfigured(f"PITCHDESK_BREAK: unknown name(s) {unknown}; known: {sorted(KNOWN)}")
    if "startup" in names:
        raise ImproperlyConfigured("PITCHDESK_BREAK=startup: deliberate startup failure")
    return names


def is_broken(name: str) -> bool:
    """Whether breakage ``name`` is switched on for this process."""
    assert name in KNOWN, name
    return name in settings.PITCHDESK_BREAK
