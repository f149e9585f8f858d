"""Recompute runs: recorded, atomic when they fail, superseded, incremental, from the command line."""

import random
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from members.models import EventKind
from members.models_layers import LayerJobRun, LifecycleStage, MemberScore, MemberScoreDraft, StageTransition
from members.services import layers as layers_service
from members.services.layers import layers_recompute_full, layers_recompute_incremental
from tests.factories import MemberFactory
from tests.factories.layers import event, ingest, purchases

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _scores() -> dict:
    return {
        s.member_id: (s.lifecycle_stage, s.rfm_score, s.value_layer, s.computed_at) for s in MemberScore.objects.all()
    }


def _population(now, count=12):
    people = MemberFactory.create_batch(count, joined_at=now - 300 * DAY)
    ingest(event for i, m in enumerate(people) for event in purchases(m, now=now, days_ago=[i + 0.5, 2 * i + 30.5]))
    return people


def test_a_run_is_recorded_with_its_progress():
    now = timezone.now()
    _population(now)
    seen = []

    run = layers_recompute_full(now=now, range_size=5, progress=lambda r: seen.append((r.step, r.done, r.total)))

    run.refresh_from_db()
    assert run.status == LayerJobRun.Status.SUCCEEDED
    assert run.rows == 12 and run.finished_at is not None and run.progress_percent == 100
    assert run.total == 3 + 3
    assert [done for _step, done, _total in seen] == sorted(done for _step, done, _total in seen)
    assert run.cut_points["rfm"]["f"] and run.cut_points["layers"]["high"] is not None
    assert not MemberScoreDraft.objects.exists()


def test_a_run_that_fails_halfway_leaves_the_previous_results_in_place(monkeypatch):
    now = timezone.now()
    _population(now)
    layers_recompute_full(now=now)
    before = _scores()
    calls = {"n": 0}
    original = layers_service._classified

    def fail_on_second_range(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return original(*args)

    monkeypatch.setattr(layers_service, "_classified", fail_on_second_range)

    with pytest.raises(RuntimeError):
        layers_recompute_full(now=now + 40 * DAY, range_size=5)

    failed = LayerJobRun.objects.order_by("-id").first()
    assert failed.status == LayerJobRun.Status.FAILED and "disk full" in failed.error
    assert _scores() == before
    assert not MemberScoreDraft.objects.exists()


def test_a_newer_run_supersedes_a_stuck_one_and_the_stuck_one_publishes_nothing():
    now = timezone.now()
    _population(now)
    stuck = LayerJobRun.objects.create(kind=LayerJobRun.Kind.FULL, heartbeat_at=now - timedelta(hours=2))

    def supersede_me(run):
        # Another run takes over while this one is still drafting.
        if run.step == "score cut points":
            LayerJobRun.objects.filter(pk=run.pk).update(status=LayerJobRun.Status.SUPERSEDED)

    first = layers_recompute_full(now=now, progress=supersede_me)

    stuck.refresh_from_db()
    assert stuck.status == LayerJobRun.Status.SUPERSEDED
    assert first.status == LayerJobRun.Status.SUPERSEDED
    assert not MemberScore.objects.exists()
    assert not MemberScoreDraft.objects.exists()

    second = layers_recompute_full(now=now)
    assert second.status == LayerJobRun.Status.SUCCEEDED and MemberScore.objects.count() == 12


def test_incremental_run_recomputes_only_members_with_new_events_with_the_full_runs_cut_points():
    now = timezone.now()
    people = _population(now)
    full = layers_recompute_full(now=now)
    before = _scores()
    changed = people[-1]  # bought longest ago: a low R score
    later = now + timedelta(hours=4)  # too soon for anyone's stage to change with time alone
    ingest(purchases(changed, now=later, days_ago=[0.2]))
    newcomer = MemberFactory(joined_at=later - DAY)

    run = layers_recompute_incremental(now=later)

    assert run.kind == LayerJobRun.Kind.INCREMENTAL and run.status == LayerJobRun.Status.SUCCEEDED
    assert run.cut_points == full.cut_points
    assert run.rows == 2
    after = _scores()
    for member in people[:-1]:
        assert after[member.pk] == before[member.pk]
    score = MemberScore.objects.get(member=changed)
    assert score.r_score == 5 and score.lifecycle_stage == LifecycleStage.PAYING and score.computed_at == later
    assert after[newcomer.pk][0] == LifecycleStage.NEW

    # Nothing new since: nothing to do.
    assert layers_recompute_incremental(now=later).rows == 0


def test_incremental_falls_back_to_a_full_run_and_waits_for_a_running_full_run():
    now = timezone.now()
    _population(now, count=3)
    first = layers_recompute_incremental(now=now)
    assert first.kind == LayerJobRun.Kind.FULL and MemberScore.objects.count() == 3

    LayerJobRun.objects.create(kind=LayerJobRun.Kind.FULL, heartbeat_at=timezone.now())
    assert layers_recompute_incremental(now=now) is None


def test_recompute_layers_command_runs_the_job(capsys):
    now = timezone.now()
    _population(now, count=4)
    ingest([event(MemberFactory(joined_at=now - 100 * DAY), EventKind.CHECK_IN, at=now - DAY)])
    err = StringIO()

    call_command("recompute_layers", "--full", stderr=err)

    assert MemberScore.objects.count() == 5
    assert LayerJobRun.objects.filter(kind=LayerJobRun.Kind.FULL, status=LayerJobRun.Status.SUCCEEDED).count() == 1
    assert "5 member scores written" in err.getvalue()

    call_command("recompute_layers", "--incremental", stderr=err)
    assert LayerJobRun.objects.filter(kind=LayerJobRun.Kind.INCREMENTAL).count() == 1


def test_churn_model_fills_p_alive_and_expected_purchases_for_buyers_only():
    now = timezone.now()
    rng = random.Random(11)
    regulars, lapsed = [], []
    for index in range(30):
        member = MemberFactory(joined_at=now - 360 * DAY)
        gap = rng.choice([7, 10, 14, 21])
        stop = 0.5 if index % 2 == 0 else 150.5  # half still buying, half stopped five months ago
        ingest(purchases(member, now=now, days_ago=[stop + k * gap for k in range(int((340 - stop) // gap))]))
        (regulars if index % 2 == 0 else lapsed).append(member)
    never = MemberFactory(joined_at=now - 360 * DAY)

    run = layers_recompute_full(now=now)

    assert set(run.model_params) == {"r", "alpha", "a", "b"}
    scores = {s.member_id: s for s in MemberScore.objects.all()}
    assert scores[never.pk].p_alive is None and scores[never.pk].expected_purchases_90d is None
    for member in regulars + lapsed:
        score = scores[member.pk]
        assert 0 <= score.p_alive <= 1
        assert score.expected_purchases_90d >= score.expected_purchases_30d >= 0
    assert min(scores[m.pk].p_alive for m in regulars) > max(scores[m.pk].p_alive for m in lapsed)

    # As of a month ago, later purchases exist in the log (and in the rollups): still a valid fit.
    earlier = layers_recompute_full(now=now - 30 * DAY)
    assert set(earlier.model_params) == {"r", "alpha", "a", "b"}
    assert MemberScore.objects.filter(member__in=regulars, p_alive__isnull=False).count() == len(regulars)


def test_incremental_run_catches_stage_changes_that_come_with_time_alone():
    now = timezone.now()
    drifting = MemberFactory(joined_at=now - 300 * DAY)
    steady = MemberFactory(joined_at=now - 300 * DAY)
    ingest(purchases(drifting, now=now, days_ago=[1.5]))
    ingest(purchases(steady, now=now, days_ago=[40.5]))  # churned already, and still churned 16 days later
    newcomer = MemberFactory(joined_at=now - 20 * DAY)
    layers_recompute_full(now=now)
    assert MemberScore.objects.get(member=drifting).lifecycle_stage == LifecycleStage.PAYING

    run = layers_recompute_incremental(now=now + 16 * DAY)  # no event of `drifting` since

    assert run.rows == 2  # drifting and newcomer; steady crossed no threshold
    assert MemberScore.objects.get(member=drifting).lifecycle_stage == LifecycleStage.AT_RISK
    assert MemberScore.objects.get(member=newcomer).lifecycle_stage != LifecycleStage.NEW
    assert StageTransition.objects.filter(member=drifting, from_stage="paying", to_stage="at_risk").count() == 1


@pytest.fixture
def eager_celery():
    from celery import current_app

    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = before


def test_a_full_run_shared_by_workers_range_by_range_gives_the_same_results(
    eager_celery, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from members.tasks import recompute_layers_full

    now = timezone.now()
    _population(now, count=13)
    sequential = layers_recompute_full(now=now, range_size=4)
    expected = {pk: row[:3] for pk, row in _scores().items()}
    MemberScore.objects.all().delete()
    settings.CRM_LAYERS_FANOUT = True
    monkeypatch.setattr(layers_service, "RANGE_SIZE", 4)

    with django_capture_on_commit_callbacks(execute=True):
        run_id = recompute_layers_full()  # the nightly task, fanned out: the ranges as one group

    run = LayerJobRun.objects.get(pk=run_id)
    assert run.status == LayerJobRun.Status.SUCCEEDED and run.done == run.total == 4 + 3
    assert {pk: row[:3] for pk, row in _scores().items()} == expected
    assert run.cut_points["rfm"] == sequential.cut_points["rfm"]
    assert run.cut_points["layers"] == sequential.cut_points["layers"]
    assert not MemberScoreDraft.objects.exists()
