from django.db import migrations


def set_unlogged(apps, schema_editor):
    # Drafts are scratch rows rewritten by every run and deleted when it publishes: they need no
    # write-ahead log (a crash loses only drafts, and the next run starts over), which roughly
    # halves the cost of writing them. PostgreSQL only; SQLite has no such notion.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE members_memberscoredraft SET UNLOGGED")


def set_logged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE members_memberscoredraft SET LOGGED")


class Migration(migrations.Migration):
    dependencies = [("members", "0004_install_layer_defaults")]

    operations = [migrations.RunPython(set_unlogged, set_logged)]
