"""Segments: materialized membership with size history, the admin preview, export, the staff page."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Channel
from members.models_layers import LayerJobRun, LayerSettings, LayerSnapshot, Segment, SegmentMember, StageTransition
from members.resources import MemberResource, members_export_write
from members.services.layers import layers_recompute_full
from members.services.segments import segment_refresh, segments_refresh_all
from tests.factories import MemberFactory, UserFactory
from tests.factories.layers import SegmentFactory, ingest, purchases

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
WECOM = {"op": "and", "rules": [{"field": "channel", "operator": "eq", "value": "wecom"}]}


def _members(segment) -> set[int]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("member_id", flat=True))


def test_materialization_adds_and_removes_the_right_members_and_records_the_size():
    a = MemberFactory(channel=Channel.WECOM)
    b = MemberFactory(channel=Channel.WECOM)
    c = MemberFactory(channel=Channel.APP)
    segment = SegmentFactory(rules=WECOM)
    first = timezone.now()

    snapshot = segment_refresh(segment=segment, now=first)

    assert _members(segment) == {a.pk, b.pk}
    assert (snapshot.members, snapshot.added, snapshot.removed) == (2, 2, 0)
    kept_since = SegmentMember.objects.get(segment=segment, member=a).added_at

    b.channel, c.channel = Channel.APP, Channel.WECOM
    b.save(update_fields=["channel"])
    c.save(update_fields=["channel"])
    snapshot = segment_refresh(segment=segment, now=first + DAY)

    assert _members(segment) == {a.pk, c.pk}
    assert (snapshot.members, snapshot.added, snapshot.removed) == (2, 1, 1)
    assert SegmentMember.objects.get(segment=segment, member=a).added_at == kept_since  # untouched, not re-added
    segment.refresh_from_db()
    assert segment.member_count == 2 and segment.last_computed_at == first + DAY
    assert list(segment.snapshots.values_list("members", "added", "removed")) == [(2, 1, 1), (2, 2, 0)]


def test_scheduled_refresh_covers_auto_refresh_segments_and_is_recorded():
    MemberFactory(channel=Channel.WECOM)
    scheduled = SegmentFactory(rules=WECOM)
    manual = SegmentFactory(rules=WECOM, auto_refresh=False)

    run = segments_refresh_all()

    assert run.kind == LayerJobRun.Kind.SEGMENTS and run.status == LayerJobRun.Status.SUCCEEDED
    assert run.total == run.done == 1
    scheduled.refresh_from_db()
    manual.refresh_from_db()
    assert scheduled.member_count == 1 and manual.member_count is None


def test_segment_export_uses_the_member_export_with_the_score_columns():
    now = timezone.now()
    buyer = MemberFactory(channel=Channel.WECOM, joined_at=now - 100 * DAY)
    MemberFactory(channel=Channel.APP)
    ingest(purchases(buyer, now=now, days_ago=[2.2, 20.2], amount=[300, 200]))
    layers_recompute_full(now=now)
    segment = SegmentFactory(rules=WECOM)
    segment_refresh(segment=segment)
    from members.services.segments import segment_members

    stream = io.BytesIO()
    written = members_export_write(
        stream=stream, file_format="csv", resource=MemberResource(), queryset=segment_members(segment=segment)
    )

    rows = list(csv.DictReader(io.StringIO(stream.getvalue().decode("utf-8-sig"))))
    assert written == 1 and len(rows) == 1
    expected = [
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "rfm_score",
        "value_layer",
        "lifecycle_stage",
        "p_alive",
        "expected_purchases_90d",
        "churn_risk",
    ]
    assert set(expected) <= set(rows[0])
    assert (rows[0]["recency_days"], rows[0]["frequency"], rows[0]["monetary"]) == ("2", "2", "500.00")
    assert rows[0]["lifecycle_stage"] == "Paying"


# Admin ---------------------------------------------------------------------------------------


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def test_admin_preview_counts_members_and_rejects_invalid_rules(operator_client):
    MemberFactory.create_batch(3, channel=Channel.WECOM)
    MemberFactory(channel=Channel.APP)
    url = reverse("admin:members_segment_preview")

    response = operator_client.post(url, data=json.dumps({"rules": WECOM}), content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and body["exact"] is True and len(body["sample"]) == 3

    bad = {"op": "and", "rules": [{"field": "channel", "operator": "eq", "value": "fax"}]}
    response = operator_client.post(url, data=json.dumps({"rules": bad}), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("rules[0]: fax is not a channel")


def test_admin_preview_caps_the_exact_count(operator_client, monkeypatch):
    from members.services import segments

    monkeypatch.setattr(segments, "PREVIEW_EXACT_LIMIT", 2)
    MemberFactory.create_batch(4, channel=Channel.WECOM)

    response = operator_client.post(
        reverse("admin:members_segment_preview"), data=json.dumps({"rules": WECOM}), content_type="application/json"
    )

    body = response.json()
    assert body["exact"] is False and body["count"] >= 3


def test_admin_preview_is_refused_to_anonymous_users(client):
    response = client.post(reverse("admin:members_segment_preview"), data="{}", content_type="application/json")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_admin_adds_a_segment_through_the_form_and_materializes_it(operator_client):
    MemberFactory.create_batch(2, channel=Channel.WECOM)

    add_url = reverse("admin:members_segment_add")
    page = operator_client.get(add_url)
    assert page.status_code == 200 and b"rule-editor-schema" in page.content

    response = operator_client.post(
        add_url,
        {
            "name": "WeCom members",
            "description": "",
            "rules": json.dumps(WECOM),
            "auto_refresh": "on",
            "snapshots-TOTAL_FORMS": "0",
            "snapshots-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    segment = Segment.objects.get(name="WeCom members")
    assert segment.member_count == 2 and segment.created_by is not None

    bad = operator_client.post(
        add_url,
        {
            "name": "Bad",
            "rules": json.dumps({"op": "and", "rules": [{"field": "nope"}]}),
            "snapshots-TOTAL_FORMS": "0",
            "snapshots-INITIAL_FORMS": "0",
        },
    )
    assert bad.status_code == 200 and "Unknown field" in bad.content.decode()
    assert not Segment.objects.filter(name="Bad").exists()


def test_segment_permissions_follow_the_roles(operator, supervisor, auditor):
    assert operator.has_perms(["members.add_segment", "members.change_segment", "members.view_segment"])
    assert not operator.has_perm("members.delete_segment")
    assert supervisor.has_perms(["members.delete_segment", "members.change_layersettings"])
    assert auditor.has_perm("members.view_segment") and not auditor.has_perm("members.change_segment")


# Staff page ----------------------------------------------------------------------------------


def test_staff_page_renders_charts_for_staff(operator_client):
    now = timezone.now()
    member = MemberFactory(joined_at=now - 100 * DAY)
    ingest(purchases(member, now=now, days_ago=[1.2]))
    layers_recompute_full(now=now - 25 * DAY)
    layers_recompute_full(now=now)
    assert StageTransition.objects.exists() and LayerSnapshot.objects.exists()

    response = operator_client.get(reverse("members:layers_dashboard"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in content and 'id="layer-chart-data"' in content
    data = response.context["chart_data"]
    assert data["layers"]["labels"] and data["stages"]["datasets"]
    assert response.context["this_week"] or data["flows"]["labels"]


def test_staff_page_is_refused_to_anonymous_users_and_staff_without_permission(client):
    response = client.get(reverse("members:layers_dashboard"))
    assert response.status_code == 302 and "/login/" in response["Location"]

    client.force_login(UserFactory(username="nobody"))
    assert client.get(reverse("members:layers_dashboard")).status_code == 403


def test_the_admin_index_links_to_the_charts(operator_client):
    response = operator_client.get(reverse("admin:members_layersnapshot_changelist"))
    assert response.status_code == 302 and response["Location"] == reverse("members:layers_dashboard")


def test_layer_admin_pages_render_with_bounded_queries(operator_client, django_assert_max_num_queries):
    now = timezone.now()
    members = MemberFactory.create_batch(5, joined_at=now - 100 * DAY)
    ingest(e for m in members for e in purchases(m, now=now, days_ago=[3.2]))
    layers_recompute_full(now=now)

    with django_assert_max_num_queries(12):
        response = operator_client.get(reverse("admin:members_memberscore_changelist") + "?lifecycle_stage=paying")
    assert response.status_code == 200 and response.context["cl"].result_count == 5
    found = operator_client.get(reverse("admin:members_memberscore_changelist") + f"?q={members[0].external_id}")
    assert found.context["cl"].result_count == 1
    runs = operator_client.get(reverse("admin:members_layerjobrun_changelist"))
    assert runs.status_code == 200 and b"<progress" in runs.content
    assert not runs.context["can_start_run"]  # operators watch runs; supervisors start them


def test_thresholds_are_edited_by_supervisors_and_only_viewed_by_operators(client, operator, supervisor):
    settings_row = LayerSettings.load()
    url = reverse("admin:members_layersettings_change", args=[settings_row.pk])
    client.force_login(operator)
    assert client.get(reverse("admin:members_layersettings_changelist"))["Location"] == url
    assert client.post(url, {"at_risk_days": 14}).status_code == 403

    client.force_login(supervisor)
    form = client.get(url).context["adminform"].form
    data = {name: form.initial[name] for name in form.fields}
    data["at_risk_days"] = 14
    response = client.post(url, data)
    assert response.status_code == 302
    settings_row.refresh_from_db()
    assert settings_row.at_risk_days == 14

    data["churned_days"] = 10  # below at risk: refused with a message
    response = client.post(url, data)
    assert response.status_code == 200 and "at risk ≤ churned ≤ silent" in response.content.decode()
