"""Two overlapping recompute runs on real parallel connections don't corrupt each other (PostgreSQL)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from members.models_layers import LayerJobRun, MemberScore, MemberScoreDraft
from members.services.layers import layers_recompute_full
from tests.factories import MemberFactory
from tests.factories.layers import ingest, purchases

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DAY = timedelta(days=1)


def _scores() -> dict:
    return {
        s.member_id: (s.frequency, s.monetary, s.r_score, s.f_score, s.m_score, s.value_layer, s.lifecycle_stage)
        for s in MemberScore.objects.all()
    }


def test_overlapping_full_runs_leave_the_results_of_one_clean_run():
    now = timezone.now()
    people = MemberFactory.create_batch(30, joined_at=now - 300 * DAY)
    ingest(e for i, m in enumerate(people) for e in purchases(m, now=now, days_ago=[i % 7 + 0.5, i * 3 + 20.5]))
    layers_recompute_full(now=now, range_size=5)
    expected = _scores()
    MemberScore.objects.all().delete()

    start = threading.Barrier(2)
    outcomes, errors = [], []

    def run() -> None:
        try:
            start.wait()
            outcomes.append(layers_recompute_full(now=now, range_size=5).status)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    # The later run supersedes the earlier one, or the earlier one published first and the later
    # one published after it; either way the published scores are one run's, complete.
    assert LayerJobRun.Status.SUCCEEDED in outcomes
    assert set(outcomes) <= {LayerJobRun.Status.SUCCEEDED, LayerJobRun.Status.SUPERSEDED}
    assert _scores() == expected
    assert not MemberScoreDraft.objects.exists()
    assert not LayerJobRun.objects.filter(status=LayerJobRun.Status.RUNNING).exists()
