"""Default Celery beat schedules, declared once here.

They are installed into django-celery-beat's tables after `migrate`, where staff can retime,
pause or disable them in the admin (Periodic tasks). Installing never overwrites an existing
row, so staff edits survive upgrades. Times are Asia/Shanghai wall-clock times.
"""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    crontab: dict
    description: str
    # A run still queued after this many seconds is dropped, so a backlog never runs twice.
    expires: int = 3600


SCHEDULES: list[Schedule] = [
    Schedule(
        name="Rebuild member rollups (nightly)",
        task="members.tasks.rebuild_member_rollups",
        crontab={"minute": "30", "hour": "2"},
        description="Recomputes last active / last purchase / orders / spend from the behaviour log, "
        "correcting any drift left by incremental updates.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Reset stuck import jobs",
        task="members.tasks.fail_stuck_import_jobs",
        crontab={"minute": "*/15"},
        description="Marks imports that stopped reporting progress (a killed worker) as failed, "
        "so staff can re-run them.",
        expires=600,
    ),
    Schedule(
        name="Recompute layers, stages and churn scores (nightly)",
        task="members.tasks.recompute_layers_full",
        crontab={"minute": "0", "hour": "4"},
        description="RFM, value layers, lifecycle stages, churn probability and risk, and automatic tags for "
        "every member, then every segment set to refresh on schedule. Runs after the rollup rebuild.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Recompute layers for members with new events (hourly)",
        task="members.tasks.recompute_layers_incremental",
        crontab={"minute": "40"},
        description="The same figures for members with events recorded since the last run, new members, and "
        "members whose stage changes with time alone (15/30/90 days without activity), scored with the cut "
        "points of the last nightly run; refreshes scheduled segments too. Skipped while the nightly run is "
        "under way.",
        expires=1800,
    ),
    Schedule(
        name="Expire points (nightly)",
        task="loyalty.tasks.expire_points",
        crontab={"minute": "10", "hour": "0"},
        description="Writes expiry entries for points whose validity ended. Expiry dates fall on local "
        "midnight, so running just after midnight keeps balances shown to members exact.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Reconcile points ledger (nightly)",
        task="loyalty.tasks.reconcile_points",
        crontab={"minute": "45", "hour": "3"},
        description="Compares every cached points balance with the sum of its ledger entries and logs any "
        "drift for staff to investigate; it corrects nothing.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Expire coupons (nightly)",
        task="loyalty.tasks.expire_coupons",
        crontab={"minute": "5", "hour": "0"},
        description="Marks issued coupons whose validity ended as expired, so members and campaigns see "
        "only coupons they can still use.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Award badges and titles (nightly)",
        task="loyalty.tasks.award_badges",
        crontab={"minute": "50", "hour": "4"},
        description="Gives every active badge and title with a rule to the members who now meet it, once "
        "each. Runs after the nightly rollups and layers.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Review tiers (nightly)",
        task="loyalty.tasks.review_tiers",
        crontab={"minute": "20", "hour": "5"},
        description="Members whose tier reached its review date keep it if they still qualify; otherwise they "
        "are warned and drop after the grace period set in the loyalty settings.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Prune API idempotency keys (hourly)",
        task="crm.tasks.prune_idempotency_keys",
        crontab={"minute": "20"},
        description="Forgets the stored responses of partner API requests sent with an Idempotency-Key "
        "more than 24 hours ago; after that the key may be used again.",
        expires=1800,
    ),
    Schedule(
        name="Start scheduled campaigns",
        task="campaigns.tasks.start_due_campaigns",
        crontab={"minute": "*"},
        description="Starts approved campaigns whose start time has come, planning their deliveries (caps, "
        "quiet hours, opt-outs applied), and finishes campaigns whose end has passed.",
        expires=120,
    ),
    Schedule(
        name="Dispatch the outbox",
        task="campaigns.tasks.dispatch_deliveries",
        crontab={"minute": "*"},
        description="Sends due messages in bounded batches, retrying failed ones with back-off. Paused "
        "campaigns and disabled channels are left waiting.",
        expires=120,
    ),
    Schedule(
        name="Run journeys",
        task="campaigns.tasks.run_journeys",
        crontab={"minute": "*/15"},
        description="Plans the messages and gifts of running journeys: welcome steps, birthdays, check-in "
        "streaks, referrals and products viewed without ordering. Each occasion sends once however often "
        "it runs.",
        expires=600,
    ),
    Schedule(
        name="Recall at-risk and churned members (daily)",
        task="campaigns.tasks.run_recall",
        crontab={"minute": "0", "hour": "10"},
        description="Queues each running recall playbook's message to the at-risk and churned members whose "
        "churn reason it covers and who were not contacted within its cooldown; a control group is kept out.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Take the daily health snapshot",
        task="crm.health.tasks.take_health_snapshot",
        crontab={"minute": "40", "hour": "0"},
        description="Computes the health dashboard's indicators (activity, LTV, open rate, check-in streaks, "
        "group exits, complaints, points liability, SLA breaches) for the day that just ended. Runs after "
        "points expiry, so the liability is that of the new day.",
        expires=6 * 3600,
    ),
    Schedule(
        name="Check community health alarms (hourly)",
        task="crm.health.tasks.check_community_alarms",
        crontab={"minute": "5"},
        description="Quiet groups (suggests a topic day), rising complaints (alerts the service lead, opens a "
        "crisis ticket draft), high group exits (pauses running promotions). Each alarm is raised once per "
        "episode; limits are in the health settings.",
        expires=1800,
    ),
    Schedule(
        name="Check failing channels",
        task="crm.health.tasks.check_channel_alarms",
        crontab={"minute": "*/5"},
        description="A channel whose gateway fails too many send attempts switches to the fallback channel set "
        "on it, and the service lead is alerted.",
        expires=240,
    ),
    Schedule(
        name="Escalate crisis tickets (3T clocks)",
        task="crm.desk.tasks.escalate_tickets",
        crontab={"minute": "*"},
        description="Checks the Tell, Time and Trust clocks of open crisis tickets: e-mails the owner when a clock "
        "is close to its deadline, and the supervisors when it is missed, recording each warning and breach "
        "once on the ticket's timeline.",
        expires=50,
    ),
]


def install_schedules() -> int:
    """Create the periodic tasks that do not exist yet; return how many were created."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    created = 0
    for schedule in SCHEDULES:
        if PeriodicTask.objects.filter(name=schedule.name).exists():
            continue
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=schedule.crontab.get("minute", "*"),
            hour=schedule.crontab.get("hour", "*"),
            day_of_week=schedule.crontab.get("day_of_week", "*"),
            day_of_month=schedule.crontab.get("day_of_month", "*"),
            month_of_year=schedule.crontab.get("month_of_year", "*"),
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.create(
            name=schedule.name,
            task=schedule.task,
            crontab=crontab,
            description=schedule.description,
            expire_seconds=schedule.expires,
        )
        created += 1
    if created:
        PeriodicTasks.update_changed()
    return created


def install_schedules_after_migrate(sender, using="default", **kwargs) -> None:
    install_schedules()
