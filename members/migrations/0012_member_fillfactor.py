from django.db import migrations

# Each layer run moves the windows (members/services/windows.py) and rewrites the row of every
# member with a purchase, refund or interaction at a window boundary (~6% of the members a
# night here). Those columns carry no index, so with room on the page the rewrite is a HOT
# update: no entry in any of the member indexes. A tenth of each page is kept free for it.
# PostgreSQL only. The setting applies to pages written from now on: rows inserted later, and
# rows whose next non-HOT update (ingest moves indexed rollups) moves them to a page with room;
# `VACUUM FULL members_member` in a maintenance window spreads the existing rows at once
# (docs/PERFORMANCE.md, issue 4).
FILLFACTOR = 90


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE members_member SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE members_member RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("members", "0011_member_last_check_in")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
