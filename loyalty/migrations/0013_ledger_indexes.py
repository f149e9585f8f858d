# Three indexes of the ledger went: member_id's own (pointsentry_member_idx, on member and id,
# serves every lookup by member), the LIKE index that unique=True builds on PostgreSQL for
# idempotency_key (nothing searches keys by pattern) and actor_id's, replaced by a partial
# index of the few entries with an actor. Every insert into the ledger maintained all three.
# Done as plain DROP INDEX: Django's AlterField would also drop and re-validate the foreign
# keys, a full scan of the ledger for nothing. The UNIQUE of idempotency_key stays as it is;
# the new state names it as a constraint.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TABLE = "loyalty_pointsentry"
DROPPED = [("member_id", "", ""), ("idempotency_key", "_like", "varchar_pattern_ops"), ("actor_id", "", "")]


def _name(schema_editor, column, suffix):
    return schema_editor._create_index_name(TABLE, [column], suffix=suffix)


def drop_indexes(apps, schema_editor):
    for column, suffix, _ in DROPPED:
        schema_editor.execute(f"DROP INDEX IF EXISTS {_name(schema_editor, column, suffix)}")


def create_indexes(apps, schema_editor):
    for column, suffix, opclass in DROPPED:
        if opclass and schema_editor.connection.vendor != "postgresql":
            continue
        schema_editor.execute(f"CREATE INDEX {_name(schema_editor, column, suffix)} ON {TABLE} ({column} {opclass})")


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0012_job_runs"),
        ("members", "0013_drafts_written_once"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="pointsentry",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="by",
                    ),
                ),
                migrations.AlterField(
                    model_name="pointsentry",
                    name="idempotency_key",
                    field=models.CharField(
                        help_text="Unique per movement; a retry with the same key returns the first entry and "
                        "changes nothing.",
                        max_length=128,
                        verbose_name="idempotency key",
                    ),
                ),
                migrations.AlterField(
                    model_name="pointsentry",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="points_entries",
                        to="members.member",
                        verbose_name="member",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="pointsentry",
                    constraint=models.UniqueConstraint(
                        fields=("idempotency_key",), name="loyalty_pointsentry_idempotency_key_key"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
        migrations.AddIndex(
            model_name="pointsentry",
            index=models.Index(
                condition=models.Q(("actor__isnull", False)), fields=["actor"], name="pointsentry_actor_idx"
            ),
        ),
    ]
