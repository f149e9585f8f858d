from django.db import migrations

from crm.roles import sync_roles_in_migration

# Default automatic tags: (name, rule, argument). Names are data; staff may rename the tags.
AUTOMATIC_TAGS = [
    ("高消费", "high_spender", ""),
    ("本月生日", "birthday_month", ""),
    ("爱看直播", "live_lover", ""),
    ("积分即将过期", "points_expiring", ""),
    ("偏好:浏览", "prefers", "view"),
    ("偏好:点赞", "prefers", "like"),
    ("偏好:评论", "prefers", "comment"),
    ("偏好:分享", "prefers", "share"),
    ("偏好:直播", "prefers", "live_watch"),
    ("偏好:文章", "prefers", "article_read"),
]


def install_defaults(apps, schema_editor):
    """The thresholds row with DOMAIN.md's defaults (the model's field defaults) and the automatic tags."""
    LayerSettings = apps.get_model("members", "LayerSettings")
    Tag = apps.get_model("members", "Tag")
    AutomaticTag = apps.get_model("members", "AutomaticTag")
    LayerSettings.objects.get_or_create(pk=1)
    for name, rule, argument in AUTOMATIC_TAGS:
        if AutomaticTag.objects.filter(rule=rule, argument=argument).exists():
            continue
        tag, _created = Tag.objects.get_or_create(name=name, defaults={"kind": "automatic"})
        if tag.kind != "automatic":
            tag.kind = "automatic"
            tag.save(update_fields=["kind"])
        AutomaticTag.objects.create(rule=rule, argument=argument, tag=tag)


class Migration(migrations.Migration):
    """Layer thresholds, automatic tags, and the roles' permissions on segments and scores."""

    dependencies = [
        ("members", "0003_layers_segments"),
        ("crm", "0001_install_roles"),
        ("loyalty", "0002_install_defaults"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(install_defaults, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
