"""End to end: a grant to a member list confirmed in the member admin is carried out by a real
Celery worker process on the real Redis broker, and a redelivery of the same task gives nothing twice."""

import pytest
from django.urls import reverse

from loyalty.models import EntryKind, LoyaltyJobMember, LoyaltyJobRun, PointsAccount, PointsEntry
from loyalty.tasks import run_member_list_grant
from tests.crm.test_celery_worker import _wait_until, start_worker, stop_worker
from tests.factories import MemberFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]


@pytest.mark.django_db(transaction=True)
def test_a_worker_gives_the_points_of_a_grant_confirmed_in_the_admin_once(client, supervisor, tmp_path):
    client.force_login(supervisor)
    in_city = MemberFactory.create_batch(5, city="苏州")
    MemberFactory(city="南京")
    response = client.post(
        reverse("admin:members_member_changelist") + "?city=苏州",
        {
            "action": "grant_points",
            "index": 0,
            "select_across": "1",
            "_selected_action": [in_city[0].pk],
            "amount": 30,
            "reason": "城市活动",
            "token": "b" * 32,
            "apply": "yes",
        },
    )
    assert response.status_code == 302
    run = LoyaltyJobRun.objects.get()
    assert run.member_count == 5

    # The request queued the task on the default queue; this worker listens on a queue of its
    # own, so it is sent there too, as a broker would redeliver it: twice in all.
    worker = start_worker(tmp_path / "worker.log")
    try:
        run_member_list_grant.apply_async(args=[run.pk], queue=worker.queue)
        _wait_until(lambda: LoyaltyJobRun.objects.get(pk=run.pk).status == LoyaltyJobRun.Status.SUCCEEDED, worker)
        run_member_list_grant.apply_async(args=[run.pk], queue=worker.queue)
        _wait_until(lambda: worker.output().count("loyalty.tasks.run_member_list_grant") >= 4, worker)
    finally:
        stop_worker(worker)

    run.refresh_from_db()
    assert (run.rows, run.progress) == (5, 100)
    assert not LoyaltyJobMember.objects.exists()
    entries = PointsEntry.objects.order_by("member_id")
    assert [(e.member_id, e.kind, e.amount, e.actor_id) for e in entries] == [
        (m.pk, EntryKind.ADJUST, 30, supervisor.pk) for m in in_city
    ]
    assert sorted(PointsAccount.objects.values_list("balance", flat=True)) == [30] * 5
    for member in in_city:
        assert_ledger_consistent(member.pk)
