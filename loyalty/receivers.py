"""Reactions of loyalty to what other apps record; connected in LoyaltyConfig.ready."""

# Events per earn task: a bulk import's batch of 50,000 becomes several tasks of bounded size.
EARN_TASK_EVENTS = 5_000


def enqueue_earn_for_events(sender, event_ids: list[int], **kwargs) -> None:
    """members.services.events.events_recorded (sent after commit): earn their points in the background."""
    from loyalty.tasks import earn_points_for_events

    for start in range(0, len(event_ids), EARN_TASK_EVENTS):
        earn_points_for_events.delay(list(event_ids[start : start + EARN_TASK_EVENTS]))
