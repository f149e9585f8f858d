from django.db import migrations
from django.utils import timezone

# Installed as drafts: staff set the offers (coupon batches), read the messages, and switch each on
# by submitting and approving it. Message texts follow DOMAIN.md's recall advice (an emotional
# message, then what fits the reason).
JOURNEYS = [
    (
        "welcome",
        "新会员欢迎旅程",
        [
            ("day0", 0, "亲爱的{{ member.name }}，欢迎加入！新人礼已放入您的账户，{{ offer.points }}积分可直接抵现。"),
            ("day3", 3, "{{ member.name }}，会员小指南：签到领积分、积分抵现、升级享折扣，点击查看。"),
            ("day7", 7, "{{ member.name }}，您的首单专享券还在等您：{{ offer.coupon }}，快来下第一单吧！"),
        ],
    ),
    ("birthday", "生日礼遇", [("gift", 0, "{{ member.name }}，生日快乐！您的生日礼已到账：{{ offer.coupon }}。")]),
    (
        "check_in",
        "签到挑战",
        [
            ("streak7", 7, "{{ member.name }}，连续签到7天达成！奖励{{ offer.points }}积分已到账。"),
            ("streak21", 21, "{{ member.name }}，连续签到21天！进阶课程已为您解锁，另送{{ offer.points }}积分。"),
        ],
    ),
    ("referral", "邀请有礼", [("joined", 0, "{{ member.name }}，邀请成功！您和好友各得一张券：{{ offer.coupon }}。")]),
    ("browse", "浏览未下单提醒", [("viewed", 90, "{{ member.name }}，您看中的宝贝还在，送您一张券：{{ offer.coupon }}。")]),
]
PLAYBOOKS = [
    ("quality", "召回：品质", "亲爱的{{ member.name }}，我们注意到您已经有一段时间没有光顾。上次的体验让您失望了，非常抱歉，送您免费试用和一张大额券。"),
    ("service", "召回：服务", "亲爱的{{ member.name }}，我们注意到您已经有一段时间没有光顾。上次的服务没做好，已为您开通优先处理通道。"),
    ("price", "召回：价格", "亲爱的{{ member.name }}，我们注意到您已经有一段时间没有光顾。限时折扣和超值套装为您准备好了。"),
    ("competitor", "召回：竞品", "亲爱的{{ member.name }}，我们注意到您已经有一段时间没有光顾。新品已上，会员专享价等您来比。"),
    ("unknown", "召回：通用", "亲爱的{{ member.name }}，我们注意到您已经有一段时间没有光顾，很想念您，回来看看吧。"),
]


def install(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    JourneyStep = apps.get_model("campaigns", "JourneyStep")
    MessageTemplate = apps.get_model("campaigns", "MessageTemplate")
    RecallPlaybook = apps.get_model("campaigns", "RecallPlaybook")
    RecallSettings = apps.get_model("campaigns", "RecallSettings")
    RecallSettings.objects.get_or_create(pk=1)
    now = timezone.now()
    for kind, name, steps in JOURNEYS:
        if Campaign.objects.filter(kind=kind).exists():
            continue
        campaign = Campaign.objects.create(name=name, kind=kind, channel="wecom", starts_at=now)
        for key, value, body in steps:
            JourneyStep.objects.create(campaign=campaign, key=key, value=value)
            MessageTemplate.objects.create(campaign=campaign, step=key, channel="wecom", language="zh-hans", body=body)
    for reason, name, body in PLAYBOOKS:
        if RecallPlaybook.objects.filter(reason=reason).exists():
            continue
        campaign = Campaign.objects.create(name=name, kind="recall", channel="wecom", starts_at=now, holdout_percent=10)
        MessageTemplate.objects.create(campaign=campaign, channel="wecom", language="zh-hans", body=body)
        RecallPlaybook.objects.create(reason=reason, campaign=campaign, cooldown_days=30)


class Migration(migrations.Migration):
    """Installs the journeys (welcome, birthday, check-in challenge, referral, browse trigger) and
    the five recall playbooks as drafts, and the recall settings row."""

    dependencies = [("campaigns", "0006_journeys_recall_offers")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
