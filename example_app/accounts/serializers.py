"""User serializers: passwords are write-only and always hashed."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import User


class UserSerializer(serializers.ModelSerializer):
    """Full user for /api/users/; ``password`` is accepted on writes, never returned."""

    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "role",
            "is_staff",
            "is_active",
            "date_joined",
            "password",
        ]
        read_only_fields = ["id", "date_joined"]

    def create(self, validated_data: dict[str, Any]) -> User:
        password = validated_data.pop("password", None)
        user = User(**validated_data)
        user.set_password(password)  # None -> unusable password: the user cannot log in
        user.save()
        return user

    def update(self, instance: User, validated_data: dict[str, Any]) -> User:
        password = validated_data.pop("password", None)
        if password is not None:
            instance.set_password(password)
        return super().update(instance, validated_data)


class SessionUserSerializer(serializers.ModelSerializer):
    """The short shape returned by login and /api/auth/me/."""

    class Meta:
        model = User
        fields = ["id", "username", "role", "is_staff"]
        read_only_fields = fields


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
