"""API errors the DRF defaults do not cover."""

from rest_framework import status
from rest_framework.exceptions import APIException


class Conflict(APIException):
    """409: the request is valid but the resource's current state forbids it."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict with the current state of the resource"
    default_code = "conflict"
