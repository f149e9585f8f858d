"""Thin Celery tasks of the crisis desk."""

from celery import shared_task

COMPENSATION_RETRIES = 3


@shared_task(acks_late=True)
def escalate_tickets() -> dict:
    """Every minute: warn owners and record missed 3T deadlines (see crm.desk.escalation)."""
    from crm.desk.escalation import tickets_escalate

    return tickets_escalate()


@shared_task(bind=True, acks_late=True, max_retries=COMPENSATION_RETRIES)
def deliver_compensation(self, ticket_id: int) -> int:
    """Issue a ticket's approved compensation; idempotent per member, so retries are safe."""
    from crm.desk.compensation import compensation_deliver, compensation_fail

    try:
        return compensation_deliver(ticket_id=ticket_id)
    except Exception as error:
        if self.request.retries >= COMPENSATION_RETRIES:
            compensation_fail(ticket_id=ticket_id, error=f"{type(error).__name__}: {error}")
            raise
        raise self.retry(exc=error, countdown=30 * 2**self.request.retries) from error
