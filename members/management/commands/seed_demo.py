"""Fill an empty database with demo members and 180 days of their behaviour.

    python manage.py seed_demo [--members 3000] [--seed 2024] [--if-empty]

Members are written in bulk. Every event goes through members.services.events_ingest, the one
way events come in, so the rollups on Member come out as production computes them. Behaviour
follows personas (loyal buyers, content lovers, casual buyers, drifting, silent, new joiners) so
that segmentation, churn warning and recall have something realistic to find. The same --seed
gives the same members and behaviour; times are relative to the day the command runs.
"""

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import phonenumbers
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from faker import Faker

from crm.demo import demo_state_build
from members.models import Channel, EventKind, Gender, InteractionKind, Member, MemberTag, Tag, TagKind
from members.services import EventInput, events_ingest

DAYS = 180

CITIES = {
    "上海": 16,
    "北京": 14,
    "杭州": 10,
    "深圳": 10,
    "成都": 8,
    "广州": 8,
    "南京": 5,
    "武汉": 5,
    "苏州": 5,
    "重庆": 4,
    "西安": 4,
    "长沙": 3,
    "天津": 3,
    "厦门": 2,
    "青岛": 2,
    "宁波": 1,
}
CHANNELS = {
    Channel.WECOM: 30,
    Channel.MINI_PROGRAM: 20,
    Channel.COMMUNITY: 14,
    Channel.STORE: 12,
    Channel.ONLINE_SHOP: 10,
    Channel.APP: 7,
    Channel.REFERRAL: 5,
    Channel.OTHER: 2,
}
# (price in yuan, weight): a skincare/lifestyle brand's shelf, cheap refills to gift boxes.
PRICES = [
    (39, 8),
    (59, 10),
    (89, 12),
    (99, 12),
    (129, 10),
    (159, 8),
    (199, 8),
    (259, 6),
    (299, 5),
    (399, 3),
    (599, 2),
    (899, 1),
]
COMPLAINT_TOPICS = ["物流太慢", "商品破损", "客服回复慢", "优惠券无法使用", "质量问题", "发错货"]
STORES = ["旗舰店", "万象城店", "来福士店", "太古里店", "大悦城店"]
GROUP_CHAT_DAY = 0.3  # chance that an active member in a group posts there that day
BROADCAST_WEEKDAY = 4  # the weekly "new arrivals" message goes out on Fridays


@dataclass(frozen=True)
class Persona:
    name: str
    weight: int
    # Mean days between purchases while active; None never buys.
    purchase_every: float | None
    max_items: int
    # Chance of being active on a given day of the active window, and interactions on such a day.
    active_day: float
    interactions_per_day: float
    interaction_mix: dict[str, int]
    # Check-ins come in streaks: chance to start one on a day, and to keep it going the next day.
    streak_start: float
    streak_keep: float
    reads_broadcast: float
    invites_per_month: float
    ugc_per_month: float


_CONTENT_MIX = {"article_read": 34, "live_watch": 26, "like": 18, "view": 10, "comment": 7, "share": 5}
_BUYER_MIX = {"view": 34, "like": 20, "article_read": 14, "live_watch": 10, "comment": 10, "share": 12}
_CASUAL_MIX = {"view": 50, "like": 20, "article_read": 14, "share": 6, "comment": 5, "live_watch": 5}

PERSONAS = [
    Persona("loyal", 14, 12, 4, 0.55, 1.5, _BUYER_MIX, 0.35, 0.85, 0.8, 0.6, 0.4),
    Persona("content_lover", 14, 90, 2, 0.9, 2.5, _CONTENT_MIX, 0.25, 0.75, 0.9, 0.3, 0.8),
    Persona("casual", 26, 35, 2, 0.2, 1.0, _CASUAL_MIX, 0.05, 0.5, 0.35, 0.05, 0.05),
    Persona("drifting", 16, 25, 3, 0.35, 1.2, _BUYER_MIX, 0.15, 0.7, 0.5, 0.1, 0.1),
    Persona("silent", 20, None, 1, 0.3, 1.0, _CASUAL_MIX, 0.0, 0.0, 0.0, 0.0, 0.0),
    Persona("new", 10, 20, 2, 0.6, 1.5, _CASUAL_MIX, 0.2, 0.6, 0.6, 0.2, 0.1),
]

MANUAL_TAGS = {
    "VIP客户": "Top spenders looked after by a dedicated advisor.",
    "KOC达人": "Content lovers whose shares bring in new members.",
    "门店常客": "Regulars at the physical stores.",
    "需回访": "Complained recently; call back.",
}


class Command(BaseCommand):
    help = "Seed an empty database with demo members and 180 days of realistic behaviour."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=3_000, help="How many members (default 3000).")
        parser.add_argument("--seed", type=int, default=2024, help="Random seed; the same seed gives the same data.")
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing (and succeed) when the database already has members."
        )
        parser.add_argument(
            "--behaviour-only",
            action="store_true",
            help="Only members and their behaviour: don't run the nightly jobs or add rewards, posts, a poll "
            "and a crisis ticket.",
        )

    def handle(self, *args, members: int, seed: int, if_empty: bool, behaviour_only: bool, **options):
        if Member.objects.exists():
            if if_empty:
                self.stdout.write("Members exist already; demo data not seeded.")
                return
            raise CommandError("The database already has members; seed_demo only fills an empty one.")
        if members < 1:
            raise CommandError("--members must be at least 1.")

        started = time.monotonic()
        # Midnight today in the brand's time zone: every event happens in the 180 days before it.
        tz = ZoneInfo(settings.TIME_ZONE)
        today = timezone.now().astimezone(tz).date()
        end = datetime(today.year, today.month, today.day, tzinfo=tz)

        plans = _plan_members(count=members, seed=seed, end=end)
        with transaction.atomic():
            created = Member.objects.bulk_create([plan.member for plan in plans], batch_size=1_000)
        ids = {member.external_id: member.pk for member in created}
        if None in ids.values():
            ids = dict(Member.objects.values_list("external_id", "id"))
        for plan in plans:
            plan.member.pk = ids[plan.member.external_id]

        result = events_ingest(events=_all_events(plans=plans, seed=seed, end=end))
        tagged = _tag_members(plans)
        state = None if behaviour_only else demo_state_build(seed=seed)

        by_persona: dict[str, int] = {}
        for plan in plans:
            by_persona[plan.persona.name] = by_persona.get(plan.persona.name, 0) + 1
        personas = ", ".join(f"{name} {count}" for name, count in sorted(by_persona.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(plans)} members ({personas}), {result.created} events and {tagged} manual tags "
                f"in {time.monotonic() - started:.1f} s."
            )
        )
        if state is not None:
            self.stdout.write(
                f"The nightly jobs ran once: {state.earned_entries} points entries, {state.upgrades} tier changes, "
                f"{state.badges} badges, layers and churn scores. Added {state.redemptions} reward redemptions, "
                f"{state.coupons} coupons, {state.submissions} member posts, {state.votes} poll votes and "
                f"{'a crisis ticket' if state.ticket_id else 'no crisis ticket (no community group)'}."
            )


@dataclass
class MemberPlan:
    member: Member
    persona: Persona
    index: int
    # The window in which the member does anything: joined .. stopped (drifting and silent stop early).
    active_from: datetime
    active_until: datetime


def _weighted(rng: random.Random, table: dict):
    return rng.choices(list(table), weights=list(table.values()))[0]


def _plan_members(*, count: int, seed: int, end: datetime) -> list[MemberPlan]:
    rng = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    start = end - timedelta(days=DAYS)
    phones: set[str] = set()
    plans = []
    for index in range(1, count + 1):
        persona = rng.choices(PERSONAS, weights=[p.weight for p in PERSONAS])[0]
        if persona.name == "new":
            joined = end - timedelta(days=rng.uniform(0.2, 14))
        elif persona.name == "drifting":
            # Long enough a member to have had habits before they stopped.
            joined = start + timedelta(days=rng.uniform(0, DAYS - 75))
        else:
            joined = start + timedelta(days=rng.uniform(0, DAYS - 1))
        if persona.name == "drifting":
            until = end - timedelta(days=rng.uniform(20, 60))
        elif persona.name == "silent":
            until = min(end, joined + timedelta(days=rng.uniform(0, 10)))
        else:
            until = end

        gender = _weighted(rng, {Gender.FEMALE: 62, Gender.MALE: 33, Gender.UNKNOWN: 5})
        # zh_CN's name_male()/name_female() ignore gender; its gendered given names do not.
        given = fake.first_name_male() if gender == Gender.MALE else fake.first_name_female()
        name = fake.last_name() + given
        phone = _unique_phone(fake, phones)
        birthday = None
        if rng.random() < 0.85:
            age = rng.triangular(18, 58, 29)
            birthday = end.date() - timedelta(days=int(age * 365.25) + rng.randint(0, 364))
        member = Member(
            external_id=f"VIP{index:08d}",
            name=name,
            phone=phone,
            email=fake.free_email() if rng.random() < 0.3 else "",
            gender=gender,
            birthday=birthday,
            city=_weighted(rng, CITIES),
            channel=_weighted(rng, CHANNELS),
            joined_at=joined,
            sms_opt_out=rng.random() < 0.06,
            email_opt_out=rng.random() < 0.1,
            wecom_opt_out=rng.random() < 0.02,
        )
        plans.append(MemberPlan(member, persona, index, joined, until))
    return plans


def _unique_phone(fake: Faker, taken: set[str]) -> str:
    while True:
        number = phonenumbers.parse(fake.phone_number(), "CN")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if phonenumbers.is_valid_number(number) and e164 not in taken:
            taken.add(e164)
            return e164


def _all_events(*, plans: list[MemberPlan], seed: int, end: datetime) -> Iterator[EventInput]:
    for plan in plans:
        # One generator per member, so a member's behaviour does not depend on the others'.
        rng = random.Random(f"{seed}:{plan.index}")
        # A group exit a day or two after the last day may fall after today: it has not happened yet.
        yield from (e for e in _member_events(plan, rng) if e.occurred_at < end)


def _at(day: datetime, rng: random.Random, hours: tuple[float, float]) -> datetime:
    return day + timedelta(hours=rng.uniform(*hours))


def _member_events(plan: MemberPlan, rng: random.Random) -> Iterator[EventInput]:
    persona, member = plan.persona, plan.member
    sequence = 0

    def event(kind: str, occurred_at: datetime, source: str, **fields) -> EventInput:
        nonlocal sequence
        sequence += 1
        return EventInput(
            member_id=member.pk,
            kind=kind,
            occurred_at=occurred_at,
            source=source,
            external_id=f"demo-{plan.index:07d}-{sequence:05d}",
            **fields,
        )

    joined = plan.active_from
    in_groups = member.channel in {Channel.WECOM, Channel.COMMUNITY} or rng.random() < 0.3
    group = f"{member.city}会员{rng.randint(1, 12)}群" if in_groups else None
    if group:
        yield event(
            EventKind.GROUP_JOIN, joined + timedelta(minutes=rng.randint(1, 30)), "wecom", payload={"group": group}
        )
    if persona.name == "silent" and rng.random() < 0.5:
        return  # joined and never did anything else

    first_day = datetime(joined.year, joined.month, joined.day, tzinfo=joined.tzinfo)
    day, in_streak, streak = first_day, False, 0
    while day < plan.active_until:
        yield from _day_events(plan, rng, day, event, group=group)
        # Check-in streaks: 7 and 21 days in a row unlock badges, so some members chase them.
        in_streak = rng.random() < (persona.streak_keep if in_streak else persona.streak_start)
        checked_in_at = _at(day, rng, (7, 10))
        if in_streak and joined < checked_in_at < plan.active_until:
            streak += 1
            yield event(EventKind.CHECK_IN, checked_in_at, "mini_program", payload={"streak": streak})
        else:
            streak = 0
        day += timedelta(days=1)

    leaves = {"drifting": 0.5, "silent": 0.2}.get(persona.name, 0)
    if in_groups and rng.random() < leaves:
        yield event(EventKind.GROUP_EXIT, plan.active_until + timedelta(hours=rng.uniform(0, 48)), "wecom")


def _day_events(
    plan: MemberPlan, rng: random.Random, day: datetime, event, *, group: str | None
) -> Iterator[EventInput]:
    persona = plan.persona
    window = (max(day, plan.active_from), min(day + timedelta(days=1), plan.active_until))
    if window[0] >= window[1]:
        return

    def within(hours: tuple[float, float]) -> datetime:
        return min(max(_at(day, rng, hours), window[0]), window[1] - timedelta(seconds=1))

    if rng.random() < persona.active_day:
        for _ in range(max(1, round(rng.expovariate(1 / persona.interactions_per_day)))):
            sub_kind = _weighted(rng, persona.interaction_mix)
            if sub_kind == InteractionKind.LIVE_WATCH:
                when, payload = within((20, 22.5)), {"live_id": f"L{day:%m%d}", "minutes": rng.randint(3, 90)}
            elif sub_kind == InteractionKind.ARTICLE_READ:
                when = within(rng.choice([(7, 9), (12, 13.5), (21, 23.5)]))
                payload = {"article_id": f"A{rng.randint(1, 300):04d}"}
            else:
                when, payload = within((9, 23.5)), {"content_id": f"C{rng.randint(1, 500):04d}"}
            yield event(
                EventKind.INTERACTION,
                when,
                rng.choice(["wecom", "mini_program", "app"]),
                sub_kind=sub_kind,
                payload=payload,
            )

        # Members in a community group chat there on some of their active days (the health
        # dashboard counts group messages per day).
        if group and rng.random() < GROUP_CHAT_DAY:
            for _ in range(rng.randint(1, 3)):
                yield event(EventKind.GROUP_MESSAGE, within((9, 23)), "wecom", payload={"group": group})

    if persona.purchase_every and rng.random() < 1 / persona.purchase_every:
        yield from _purchase(plan, rng, within(rng.choice([(11.5, 13.5), (19.5, 23)])), event)

    if day.weekday() == BROADCAST_WEEKDAY and rng.random() < persona.reads_broadcast:
        yield event(EventKind.MESSAGE_READ, within((10, 22)), "wecom", payload={"message": f"周五上新 {day:%m-%d}"})
    if rng.random() < persona.invites_per_month / 30:
        yield event(EventKind.INVITE, within((10, 22)), "wecom", payload={"invited": rng.randint(1, 3)})
    if rng.random() < persona.ugc_per_month / 30:
        yield event(
            EventKind.UGC,
            within((12, 23)),
            "community",
            payload={"title": rng.choice(["开箱分享", "使用心得", "搭配推荐", "晒单"])},
        )


def _purchase(plan: MemberPlan, rng: random.Random, when: datetime, event) -> Iterator[EventInput]:
    prices, weights = zip(*PRICES, strict=True)
    items = rng.choices(prices, weights=weights, k=rng.randint(1, plan.persona.max_items))
    # Most prices end in .00; promotions take a few yuan off.
    discount = Decimal(rng.choice([0, 0, 0, 5, 10, 20])) if sum(items) > 100 else Decimal(0)
    amount = Decimal(sum(items)) - discount
    in_store = plan.member.channel == Channel.STORE or rng.random() < 0.15
    order_no = f"SO{when:%Y%m%d}{plan.index:07d}{rng.randint(0, 999):03d}"
    payload = {"order_no": order_no, "items": len(items)}
    if in_store:
        payload["store"] = f"{plan.member.city}{rng.choice(STORES)}"
    yield event(EventKind.PURCHASE, when, "pos" if in_store else "shop", amount=amount, payload=payload)

    # A drifting member's refund or complaint after they went quiet would make them look active.
    last_day = plan.active_until
    if rng.random() < 0.03:
        refunded = Decimal(rng.choice(items)) if len(items) > 1 else amount
        refunded_at = when + timedelta(days=rng.uniform(1, 14))
        if refunded_at < last_day:
            yield event(
                EventKind.REFUND, refunded_at, "shop", amount=min(refunded, amount), payload={"order_no": order_no}
            )
    if rng.random() < 0.015:
        complained_at = when + timedelta(days=rng.uniform(1, 5))
        if complained_at < last_day:
            yield event(
                EventKind.COMPLAINT,
                complained_at,
                "service",
                payload={"order_no": order_no, "topic": rng.choice(COMPLAINT_TOPICS)},
            )


def _tag_members(plans: list[MemberPlan]) -> int:
    tags = {
        name: Tag.objects.get_or_create(name=name, defaults={"kind": TagKind.MANUAL, "description": about})[0]
        for name, about in MANUAL_TAGS.items()
    }
    loyal = [plan for plan in plans if plan.persona.name == "loyal"]
    members = Member.objects.in_bulk([plan.member.pk for plan in plans])
    top_spenders = sorted(loyal, key=lambda plan: members[plan.member.pk].total_spent, reverse=True)
    links = [MemberTag(member_id=plan.member.pk, tag=tags["VIP客户"]) for plan in top_spenders[: len(loyal) // 4 + 1]]
    links += [
        MemberTag(member_id=plan.member.pk, tag=tags["KOC达人"])
        for plan in plans
        if plan.persona.name == "content_lover" and plan.index % 5 == 0
    ]
    links += [
        MemberTag(member_id=plan.member.pk, tag=tags["门店常客"])
        for plan in loyal
        if plan.member.channel == Channel.STORE
    ]
    complained = Member.objects.filter(events__kind=EventKind.COMPLAINT).values_list("id", flat=True).distinct()
    links += [MemberTag(member_id=member_id, tag=tags["需回访"]) for member_id in complained]
    MemberTag.objects.bulk_create(links, ignore_conflicts=True)
    return len(links)
