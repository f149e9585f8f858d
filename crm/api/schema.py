"""OpenAPI generation tweaks for the one-view-per-operation style."""

from drf_spectacular.openapi import AutoSchema


class ApiAutoSchema(AutoSchema):
    """Names nested serializers after their view: `MemberListApi.OutputSerializer` becomes the
    component `MemberListOutput`, so that every view's Input/Output gets a component of its own."""

    def get_serializer_name(self, serializer, direction) -> str:
        cls = serializer.__class__
        qualname = cls.__qualname__
        if "." in qualname and "<locals>" not in qualname:
            owner, name = qualname.rsplit(".", 1)
            return owner.replace(".", "").removesuffix("Api") + name
        return super().get_serializer_name(serializer, direction)
