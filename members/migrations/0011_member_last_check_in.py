from django.db import migrations, models

# The last check-in of each member. Filled range by range by the next rebuild of the windowed
# figures (members.services.windows), which this migration asks for: a single UPDATE of every
# member row here took over ten minutes at a million members on the project's machine. Until
# that rebuild has run, segment rules count check-ins in the behaviour log.


def request_rebuild(apps, schema_editor):
    apps.get_model("members", "EventWindows").objects.update(ready=False, rebuild_reason="")


class Migration(migrations.Migration):
    dependencies = [("members", "0010_memberscore_hot_updates")]

    operations = [
        migrations.AddField(
            model_name="member",
            name="last_check_in_at",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="last check-in"),
        ),
        migrations.RunPython(request_rebuild, migrations.RunPython.noop),
    ]
