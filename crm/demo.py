"""Demo data beyond members and their behaviour: what a brand's first months would leave behind.

`seed_demo` calls `demo_state_build` after recording the events, so that `make run` opens on a
product that looks lived in rather than on empty pages that fill up at the first night's jobs:
the nightly jobs run once (points earned, tiers, badges, layers and churn scores), a small reward
catalogue and a coupon batch exist with a few redemptions, the moderation queue has member posts
in every state, a co-creation poll is open with votes, and one crisis ticket is on the desk.

Everything goes through the same services staff and the schedules use, so the demo shows the
product's real behaviour (ledger entries with their keys, tier history, timeline events).
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Max, Q
from django.utils import timezone

from campaigns.ugc.models import Poll, PollOption, SubmissionKind
from campaigns.ugc.services.polls import poll_open, poll_vote
from campaigns.ugc.services.submissions import submission_create, submissions_approve, submissions_feature
from crm.desk.models import Severity, TicketSource
from crm.desk.services import ticket_open
from loyalty.models import CouponBatch, CouponKind, EarnRule, EarnRuleKind, PointsAccount, Reward
from loyalty.services.badges import badges_award
from loyalty.services.earning import points_earn_backfill
from loyalty.services.rewards import coupons_issue, reward_redeem
from loyalty.services.tiers import tiers_upgrade_if_qualified
from members.models import EventKind, Member, MemberEvent
from members.services.layers import layers_recompute_full

# Member posts for the moderation queue: (kind, title, text, rating).
POSTS = [
    (SubmissionKind.REVIEW, "新品面霜很好用", "用了两周，干皮冬天终于不起皮了，会回购。", 5),
    (SubmissionKind.REVIEW, "物流有点慢", "东西不错，就是这次快递走了五天。", 3),
    (SubmissionKind.TEXT, "会员日活动建议", "希望会员日可以提前一天通知，上班族经常错过。", None),
    (SubmissionKind.PROPOSAL, "想要一个旅行装", "出差带正装太重了，能不能出 30ml 的旅行装？", None),
    (SubmissionKind.TEXT, "打卡第 30 天", "坚持打卡一个月，拿到了打卡达人徽章，开心！", None),
    (SubmissionKind.REVIEW, "客服很耐心", "换货的时候客服一直跟进，体验很好。", 5),
    (SubmissionKind.PROPOSAL, "联名款香型投票", "想要桂花味的限定款，秋天用正合适。", None),
    (SubmissionKind.TEXT, "社群分享", "今天直播学到的护肤步骤分享给大家：洁面、爽肤水、精华、面霜。", None),
]
POLL_OPTIONS = ["桂花乌龙", "白茶茉莉", "雪松琥珀"]
# The demo brand's earn rules (kind, sub-kind, name, points, daily cap, streak days, streak bonus).
# The product ships none: every brand sets its own points economy in the admin. No check-in streak
# bonus here: on SQLite, the demo's default database, the streak's join makes earning a few times
# slower (PostgreSQL hash-joins it); the 7-day streak badge celebrates streaks instead.
EARN_RULES = [
    (EarnRuleKind.PURCHASE, "", "消费 1 元得 1 积分", 1, None, None, 0),
    (EarnRuleKind.CHECK_IN, "", "每日签到 5 积分", 5, None, None, 0),
    (EarnRuleKind.INTERACTION, "", "互动 2 积分（每日最多 10）", 2, 10, None, 0),
    (EarnRuleKind.INVITE, "", "邀请好友 50 积分", 50, None, None, 0),
    (EarnRuleKind.UGC, "", "内容审核通过 20 积分", 20, None, None, 0),
]


@dataclass
class DemoState:
    earned_entries: int
    upgrades: int
    badges: int
    redemptions: int
    coupons: int
    submissions: int
    votes: int
    ticket_id: int | None


def demo_state_build(*, seed: int, now: datetime | None = None) -> DemoState:
    """Run the nightly jobs once and add the operational samples; members and events must exist."""
    now = now or timezone.now()
    rng = random.Random(seed)
    _earn_rules()
    earned = points_earn_backfill(now=now)
    upgrades = tiers_upgrade_if_qualified(member_ids=Member.objects.values_list("pk", flat=True), now=now)
    awards = badges_award(now=now)
    layers_recompute_full(now=now)
    redemptions = _rewards_and_redemptions(rng=rng, now=now)
    coupons = _coupon_batch(now=now)
    submissions = _member_posts(rng=rng, now=now)
    votes = _co_creation_poll(rng=rng, now=now)
    ticket = _crisis_ticket(now=now)
    return DemoState(
        earned_entries=earned.entries,
        upgrades=upgrades,
        badges=sum(awards.values()),
        redemptions=redemptions,
        coupons=coupons,
        submissions=submissions,
        votes=votes,
        ticket_id=ticket.pk if ticket else None,
    )


def _earn_rules() -> None:
    for kind, sub_kind, name, points, daily_cap, streak_days, streak_bonus in EARN_RULES:
        EarnRule.objects.get_or_create(
            kind=kind,
            sub_kind=sub_kind,
            defaults={
                "name": name,
                "points": points,
                "daily_cap": daily_cap,
                "streak_days": streak_days,
                "streak_bonus": streak_bonus,
            },
        )


def _rewards_and_redemptions(*, rng: random.Random, now: datetime) -> int:
    catalogue = [
        Reward.objects.create(name="品牌帆布袋", points_price=500, stock=200, per_member_limit=1),
        Reward.objects.create(name="旅行装面霜 15ml", points_price=1_200, stock=100, per_member_limit=2),
        Reward.objects.create(name="10 元无门槛券", points_price=500, stock=None, per_member_limit=5),
    ]
    richest = list(
        PointsAccount.objects.filter(balance__gte=1_200).order_by("-balance").values_list("member_id", flat=True)[:40]
    )
    redeemed = 0
    for member in Member.objects.filter(pk__in=rng.sample(richest, min(len(richest), 15))):
        reward = rng.choice(catalogue)
        reward_redeem(reward=reward, member=member, idempotency_key=f"demo:redeem:{member.pk}", now=now)
        redeemed += 1
    return redeemed


def _coupon_batch(*, now: datetime) -> int:
    batch = CouponBatch.objects.create(
        name="老客回归 20 元券",
        kind=CouponKind.AMOUNT,
        value=Decimal("20"),
        min_spend=Decimal("99"),
        valid_from=now,
        valid_until=now + timedelta(days=30),
    )
    # Members who bought before but not in the last 60 days: the recall audience staff would pick.
    lapsed = Member.objects.filter(last_purchase_at__lt=now - timedelta(days=60)).order_by("pk")[:200]
    return coupons_issue(batch=batch, members=list(lapsed.values_list("pk", flat=True)), issue_key="demo:recall")


def _member_posts(*, rng: random.Random, now: datetime) -> int:
    authors = list(Member.objects.filter(last_interaction_at__gte=now - timedelta(days=30)).order_by("pk")[:200])
    if not authors:
        return 0
    created = []
    for index, (kind, title, text, rating) in enumerate(POSTS):
        submission, _ = submission_create(
            member=rng.choice(authors),
            kind=kind,
            source="mini_program",
            title=title,
            text=text,
            rating=rating,
            external_id=f"demo-{index}",
        )
        created.append(submission)
    # Half approved (two of them featured on the wall), the rest waiting for the moderators.
    approved = [submission.pk for submission in created[::2]]
    submissions_approve(submission_ids=approved, actor=_demo_moderator(), now=now)
    submissions_feature(submission_ids=approved[:2], actor=_demo_moderator(), now=now)
    return len(created)


def _co_creation_poll(*, rng: random.Random, now: datetime) -> int:
    poll = Poll.objects.create(
        title="秋季限定香型，你来定",
        description="得票最高的香型将作为秋季限定款上市，参与投票即得 20 积分。",
        closes_at=now + timedelta(days=7),
        reward_points=20,
    )
    options = [PollOption.objects.create(poll=poll, label=label, position=i) for i, label in enumerate(POLL_OPTIONS)]
    poll_open(poll=poll)
    voters = Member.objects.filter(last_interaction_at__gte=now - timedelta(days=14)).order_by("pk")[:120]
    votes = 0
    for member in voters:
        option = rng.choices(options, weights=[5, 3, 2])[0]
        poll_vote(poll_id=poll.pk, option_id=option.pk, member=member, source="mini_program", now=now)
        votes += 1
    return votes


def _crisis_ticket(*, now: datetime):
    """A delivery-delay complaint in the busiest community group, opened an hour ago."""
    busiest = (
        MemberEvent.objects.filter(kind=EventKind.GROUP_JOIN)
        .exclude(Q(payload__group__isnull=True) | Q(payload__group=""))
        .values("payload__group")
        .annotate(latest=Max("occurred_at"))
        .order_by("-latest")
        .first()
    )
    if busiest is None:
        return None
    return ticket_open(
        title=f"{busiest['payload__group']}：多位会员投诉双十一订单发货延迟",
        description="群内 6 位会员反映下单 5 天未发货，情绪激动，有人提到要在小红书发帖。",
        severity=Severity.HIGH,
        source=TicketSource.ALARM,
        group=busiest["payload__group"],
        category="物流",
        now=now - timedelta(hours=1),
    )


def _demo_moderator():
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(
        username="demo-moderator", defaults={"is_staff": True, "is_active": False, "first_name": "示例审核员"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
