from django.db import migrations, models

# The last check-in of each member, from the behaviour log: one aggregate over the check-ins
# (memberevent_kind_time_idx), then ingest keeps it current like the other rollups.
BACKFILL = """
    UPDATE members_member SET last_check_in_at = c.last_at
    FROM (SELECT member_id, MAX(occurred_at) AS last_at FROM members_memberevent
          WHERE kind = 'check_in' GROUP BY member_id) AS c
    WHERE members_member.id = c.member_id
"""


def backfill(apps, schema_editor):
    schema_editor.execute(BACKFILL)


class Migration(migrations.Migration):
    dependencies = [("members", "0010_memberscore_hot_updates")]

    operations = [
        migrations.AddField(
            model_name="member",
            name="last_check_in_at",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="last check-in"),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
