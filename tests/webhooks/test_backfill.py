"""The backfill: events missed during an outage, read back from the gateway's events list and
applied through the webhook path, once each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest

from bountyescrow import EscrowService, EscrowStatus
from bountyescrow.alerts import capture_alerts
from bountyescrow.cli import ServiceFactory, main
from bountyescrow.testing import ManualClock, books_agree
from bountyescrow.webhooks import BackfillReport, WebhookDispatcher, backfill_events
from tests.keys import new_key

from .support import ADMIN, HUNTER, POSTER, RecordingFake, deliver, open_escrow, usd


def _outage(
    service: EscrowService, fake: RecordingFake, dispatcher: WebhookDispatcher, clock: ManualClock
) -> tuple[datetime, str, str]:
    """One escrow funded while webhooks arrive; then, with every event lost: a second escrow
    paid, a refund made in the Dashboard, a payee onboarded, a dispute opened."""
    before = clock.now()
    first = open_escrow(service, bounty="b1")
    assert first.payment_ref is not None
    fake.pay(first.payment_ref)
    payee = service.register_payee(HUNTER, country="US")
    deliver(fake, dispatcher)
    clock.advance(timedelta(minutes=5))
    second = open_escrow(service, bounty="b2")
    assert second.payment_ref is not None
    fake.pay(second.payment_ref)
    fake.refund_outside(first.payment_ref, usd(5_000))
    fake.complete_onboarding(payee.account_ref)
    clock.advance(timedelta(minutes=5))
    assert fake.drop_events() > 0
    return before, first.id, second.id


class TestBackfill:
    def test_after_an_outage_the_books_are_as_if_every_webhook_had_arrived(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        since, first, second = _outage(service, fake, dispatcher, clock)
        assert service.get(second).status is EscrowStatus.AWAITING_FUNDING

        report = dispatcher.backfill(since=since)

        assert report.failed == 0
        assert report.processed >= 3
        assert report.seen >= 1, "the events delivered before the outage are in the log"
        assert service.get(second).status is EscrowStatus.FUNDED
        assert service.get(first).refunded == usd(5_000)
        assert service.get_payee(HUNTER).ready
        assert books_agree(service, fake) == []
        assert service.check_invariants() == []
        # The payee became ready through the backfill: a release now goes out.
        service.release(
            second, payee_id=HUNTER, amount=usd(10_000), actor=POSTER, idempotency_key=new_key()
        )
        deliver(fake, dispatcher)
        assert books_agree(service, fake) == []

    def test_a_second_backfill_changes_nothing(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        since, first, second = _outage(service, fake, dispatcher, clock)
        first_run = dispatcher.backfill(since=since)
        books = [service.get(first), service.get(second)]
        audit = len(service.audit_trail(first, actor=ADMIN))
        audit += len(service.audit_trail(second, actor=ADMIN))
        events = service.events(limit=1000)

        again = backfill_events(service, since=since)

        assert again.processed == 0
        assert again.failed == 0
        assert again.read == first_run.read
        assert again.seen >= first_run.processed + first_run.seen
        assert [service.get(first), service.get(second)] == books
        assert (
            len(service.audit_trail(first, actor=ADMIN))
            + len(service.audit_trail(second, actor=ADMIN))
            == audit
        )
        assert service.events(limit=1000) == events
        assert books_agree(service, fake) == []

    def test_the_window_limits_what_is_read(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        since, _, second = _outage(service, fake, dispatcher, clock)
        report = dispatcher.backfill(since=since, until=since + timedelta(minutes=1))
        assert report.processed == 0
        assert service.get(second).status is EscrowStatus.AWAITING_FUNDING
        assert dispatcher.backfill(since=clock.now() + timedelta(hours=1)) == BackfillReport()

    def test_a_failed_event_is_counted_and_kept_for_replay(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
    ) -> None:
        since, first, _ = _outage(service, fake, dispatcher, clock)
        refund_ref = fake.movements[-1].ref
        fake.refused.add(refund_ref)
        with capture_alerts() as alerts:
            report = dispatcher.backfill(since=since)
        assert report.failed >= 1
        assert not report.ok
        assert "gateway_object_unavailable" in [a.kind for a in alerts]
        failed = {r.id for r in service.failed_events()}
        assert set(report.failed_event_ids) <= {i.split(":")[0] for i in failed}
        fake.refused.clear()
        retry = dispatcher.backfill(since=since)
        assert retry.failed == 0
        assert service.get(first).refunded == usd(5_000)
        assert books_agree(service, fake) == []

    def test_naive_datetimes_are_refused(self, dispatcher: WebhookDispatcher) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            dispatcher.backfill(since=datetime(2026, 1, 1))


class TestFakeEventsList:
    def test_dropped_events_stay_listed_oldest_first(
        self, service: EscrowService, fake: RecordingFake, clock: ManualClock
    ) -> None:
        since = clock.now()
        escrow = open_escrow(service)
        assert escrow.payment_ref is not None
        fake.pay(escrow.payment_ref)
        queued = [p["id"] for p in fake.pending_payloads]
        fake.drop_events()
        listed = list(fake.iter_events(since=since))
        assert [p["id"] for p in listed] == queued
        assert [p["created"] for p in listed] == sorted(p["created"] for p in listed)

    def test_events_older_than_thirty_days_are_gone(
        self, service: EscrowService, fake: RecordingFake, clock: ManualClock
    ) -> None:
        since = clock.now()
        old = open_escrow(service)
        assert old.payment_ref is not None
        fake.pay(old.payment_ref)
        clock.advance(timedelta(days=31))
        new = open_escrow(service, bounty="b2")
        assert new.payment_ref is not None
        fake.pay(new.payment_ref)
        listed = list(fake.iter_events(since=since))
        assert listed
        assert all(
            p["created"] >= int((clock.now() - timedelta(days=30)).timestamp()) for p in listed
        )


class TestCommand:
    @staticmethod
    def factory(service: EscrowService) -> ServiceFactory:
        @contextmanager
        def build(url: str, namespace: str) -> Iterator[EscrowService]:
            yield service

        return build

    def test_backfill_prints_the_counts(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        since, _, second = _outage(service, fake, dispatcher, clock)
        status = main(
            ["webhooks", "backfill", "--url", "unused", "--since", since.isoformat()],
            service_factory=self.factory(service),
        )
        out = capsys.readouterr().out
        assert status == 0
        assert "failed 0" in out
        assert "processed " in out
        assert service.get(second).status is EscrowStatus.FUNDED

    def test_backfill_exits_1_when_an_event_failed(
        self,
        service: EscrowService,
        fake: RecordingFake,
        dispatcher: WebhookDispatcher,
        clock: ManualClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        since, _, _ = _outage(service, fake, dispatcher, clock)
        fake.refused.add(fake.movements[-1].ref)
        status = main(
            ["webhooks", "backfill", "--url", "unused", "--since", since.isoformat()],
            service_factory=self.factory(service),
        )
        assert status == 1
        assert "bountyescrow webhooks replay evt_" in capsys.readouterr().out

    @pytest.mark.parametrize("since", ["2d", "36h", "90m", "1w", "2026-12-01T08:00:00"])
    def test_since_takes_an_age_or_a_time(self, since: str) -> None:
        from bountyescrow.cli import _when

        now = datetime.fromisoformat("2026-12-03T12:00:00+00:00")
        moment = _when(since, now)
        assert moment.tzinfo is not None
        assert moment < now

    def test_a_bad_since_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["webhooks", "backfill", "--url", "unused", "--since", "yesterday"]) == 2
        assert "neither an age" in capsys.readouterr().err
