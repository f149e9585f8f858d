"""Staff roles with least privilege.

Each role is a Django group. The permissions below are the minimum that role needs; staff may
grant more in the admin (Groups) and syncing never takes anything away. Later apps append
their permissions here and sync again from a migration.
"""

from django.contrib.auth.management import create_permissions

OPERATOR = "Operator"
SUPERVISOR = "Supervisor"
AUDITOR = "Auditor"

_OPERATOR = [
    "members.view_member",
    "members.add_member",
    "members.change_member",
    "members.view_tag",
    "members.add_tag",
    "members.change_tag",
    "members.view_memberevent",
    "members.view_importjob",
    "members.add_importjob",
    "members.import_members",
    "members.import_events",
    "members.export_members",
    "loyalty.view_pointsaccount",
    "loyalty.view_pointsentry",
    "loyalty.view_pointsallocation",
    "loyalty.view_loyaltysettings",
    "loyalty.view_tier",
    "loyalty.view_membertier",
    "loyalty.view_tierchange",
    "loyalty.view_earnrule",
    "loyalty.view_pointsmultiplierwindow",
    "loyalty.view_reward",
    "loyalty.view_rewardredemption",
    "loyalty.view_couponbatch",
    "loyalty.view_coupon",
    "loyalty.view_badge",
    "loyalty.view_memberbadge",
    "loyalty.view_tierdowngradenotice",
    "loyalty.view_loyaltyjobrun",
    # Layers, churn warning and segments (issue 4).
    "members.view_segment",
    "members.add_segment",
    "members.change_segment",
    "members.refresh_segment",
    "members.view_segmentsnapshot",
    "members.view_memberscore",
    "members.view_stagetransition",
    "members.view_layersnapshot",
    "members.view_layerjobrun",
    "members.view_layersettings",
    # Campaigns and the outbox (issue 5): operators draft and submit; supervisors approve.
    "campaigns.view_campaign",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
    "campaigns.view_messagetemplate",
    "campaigns.add_messagetemplate",
    "campaigns.change_messagetemplate",
    "campaigns.delete_messagetemplate",
    "campaigns.view_campaignvariant",
    "campaigns.add_campaignvariant",
    "campaigns.change_campaignvariant",
    "campaigns.delete_campaignvariant",
    "campaigns.view_campaigntransition",
    "campaigns.view_delivery",
    "campaigns.view_outboxsettings",
    "campaigns.view_journeystep",
    "campaigns.add_journeystep",
    "campaigns.change_journeystep",
    "campaigns.delete_journeystep",
    "campaigns.view_recallplaybook",
    "campaigns.view_recallsettings",
    "campaigns.view_memberchurnreason",
    "campaigns.add_memberchurnreason",
    "campaigns.change_memberchurnreason",
    "campaigns.view_referral",
    "campaigns.view_channelconfig",
    # Health dashboard (issue 7): operators watch it and close its suggested tasks; supervisors
    # set targets and alarm limits and acknowledge or resolve alarms.
    "health.view_healthsettings",
    "health.view_healthsnapshot",
    "health.view_alarm",
    "health.view_dashboardtask",
    "health.change_dashboardtask",
    # Member content and co-creation polls (issue 7): operators moderate and run polls;
    # supervisors keep the sensitive-word list and close polls (which rewards the winner).
    "ugc.view_submission",
    "ugc.moderate_submission",
    "ugc.view_submissionimage",
    "ugc.view_moderationdecision",
    "ugc.view_sensitiveword",
    "ugc.view_poll",
    "ugc.add_poll",
    "ugc.change_poll",
    "ugc.view_polloption",
    "ugc.add_polloption",
    "ugc.change_polloption",
    "ugc.delete_polloption",
    "ugc.view_pollvote",
    # Crisis desk (issue 7): operators open and work tickets (Tell, Time, request compensation);
    # supervisors approve compensation and set the 3T deadlines; auditors read.
    "desk.view_ticket",
    "desk.add_ticket",
    "desk.change_ticket",
    "desk.view_ticketevent",
    "desk.view_ticketmember",
    "desk.view_slapolicy",
    "desk.view_desksettings",
    "desk.view_desk_reports",
]

_SUPERVISOR = _OPERATOR + [
    "members.delete_member",
    "members.delete_tag",
    "members.view_full_phone",
    "members.view_all_importjobs",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.change_periodictask",
    "django_celery_beat.view_crontabschedule",
    "django_celery_beat.add_crontabschedule",
    "django_celery_beat.view_intervalschedule",
    "loyalty.adjust_points",
    "loyalty.change_loyaltysettings",
    "loyalty.change_tier",
    "loyalty.add_earnrule",
    "loyalty.change_earnrule",
    "loyalty.add_pointsmultiplierwindow",
    "loyalty.change_pointsmultiplierwindow",
    "loyalty.add_reward",
    "loyalty.change_reward",
    "loyalty.add_couponbatch",
    "loyalty.change_couponbatch",
    "loyalty.add_coupon",
    "loyalty.add_badge",
    "loyalty.change_badge",
    "loyalty.award_badges",
    "members.delete_segment",
    "members.change_layersettings",
    "members.add_layerjobrun",
    "crm.view_partner",
    "crm.add_partner",
    "crm.change_partner",
    "crm.view_partnerapikey",
    "crm.add_partnerapikey",
    "crm.change_partnerapikey",
    "campaigns.approve_campaign",
    "campaigns.change_outboxsettings",
    "campaigns.change_recallplaybook",
    "campaigns.change_recallsettings",
    "campaigns.change_channelconfig",
    "health.change_healthsettings",
    "health.acknowledge_alarm",
    "ugc.add_sensitiveword",
    "ugc.change_sensitiveword",
    "ugc.delete_sensitiveword",
    "ugc.close_poll",
    "desk.approve_compensation",
    "desk.change_slapolicy",
    "desk.change_desksettings",
]

_AUDITOR = [
    "members.view_member",
    "members.view_tag",
    "members.view_memberevent",
    "members.view_importjob",
    "members.view_all_importjobs",
    "django_celery_beat.view_periodictask",
    "loyalty.view_pointsaccount",
    "loyalty.view_pointsentry",
    "loyalty.view_pointsallocation",
    "loyalty.view_loyaltysettings",
    "loyalty.view_tier",
    "loyalty.view_membertier",
    "loyalty.view_tierchange",
    "loyalty.view_earnrule",
    "loyalty.view_pointsmultiplierwindow",
    "loyalty.view_reward",
    "loyalty.view_rewardredemption",
    "loyalty.view_couponbatch",
    "loyalty.view_coupon",
    "loyalty.view_badge",
    "loyalty.view_memberbadge",
    "loyalty.view_tierdowngradenotice",
    "loyalty.view_loyaltyjobrun",
    "members.view_segment",
    "members.view_segmentsnapshot",
    "members.view_memberscore",
    "members.view_stagetransition",
    "members.view_layersnapshot",
    "members.view_layerjobrun",
    "members.view_layersettings",
    "campaigns.view_campaign",
    "campaigns.view_messagetemplate",
    "campaigns.view_campaignvariant",
    "campaigns.view_campaigntransition",
    "campaigns.view_delivery",
    "campaigns.view_outboxsettings",
    "campaigns.view_journeystep",
    "campaigns.view_recallplaybook",
    "campaigns.view_recallsettings",
    "campaigns.view_memberchurnreason",
    "campaigns.view_referral",
    "campaigns.view_channelconfig",
    "ugc.view_submission",
    "ugc.view_submissionimage",
    "ugc.view_moderationdecision",
    "ugc.view_sensitiveword",
    "ugc.view_poll",
    "ugc.view_polloption",
    "ugc.view_pollvote",
    "health.view_healthsettings",
    "health.view_healthsnapshot",
    "health.view_alarm",
    "health.view_dashboardtask",
    "desk.view_ticket",
    "desk.view_ticketevent",
    "desk.view_ticketmember",
    "desk.view_slapolicy",
    "desk.view_desksettings",
    "desk.view_desk_reports",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    OPERATOR: _OPERATOR,
    SUPERVISOR: _SUPERVISOR,
    AUDITOR: _AUDITOR,
}


def sync_roles(apps) -> None:
    """Create the role groups and add any of their permissions that are missing.

    `apps` is an app registry: the historical one inside a migration, the global one otherwise.
    """
    for app_config in apps.get_app_configs():
        if app_config.models_module is not None:
            create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, dotted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for perm in dotted:
            app_label, codename = perm.split(".")
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)


def sync_roles_in_migration(apps, schema_editor) -> None:
    """RunPython entry point: historical app configs have no models module, so mark them."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
    sync_roles(apps)


def sync_roles_after_migrate(sender, **kwargs) -> None:
    from django.apps import apps as global_apps

    sync_roles(global_apps)
