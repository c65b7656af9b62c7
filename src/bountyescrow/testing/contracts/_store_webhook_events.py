"""Store contract: the webhook events repository (`uow.webhook_events`)."""

from __future__ import annotations

from datetime import timedelta

import attrs

from bountyescrow.domain.records import WebhookStatus
from bountyescrow.ports.store import EscrowStore
from bountyescrow.testing.contracts._store_base import StoreContractBase
from bountyescrow.testing.contracts._store_builders import MINUTE, T0, make_webhook_event


class WebhookEventContract(StoreContractBase):
    """What `uow.webhook_events` does: round trips, listing failures, pruning."""

    def test_webhook_event_round_trips_and_updates(self, store: EscrowStore) -> None:
        failed = make_webhook_event(status=WebhookStatus.FAILED)
        with store.unit_of_work() as uow:
            assert uow.webhook_events.get("evt_1", for_update=True) is None
            uow.webhook_events.save(failed)
            uow.commit()
        with self.read(store) as uow:
            assert uow.webhook_events.get("evt_1") == failed
        processed = attrs.evolve(
            failed,
            status=WebhookStatus.PROCESSED,
            attempts=3,
            error=None,
            payload=None,
            processed_at=T0 + 2 * MINUTE,
        )
        with store.unit_of_work() as uow:
            assert uow.webhook_events.get("evt_1", for_update=True) == failed
            uow.webhook_events.save(processed)
            uow.commit()
        with self.read(store) as uow:
            assert uow.webhook_events.get("evt_1") == processed
            assert uow.webhook_events.get("evt_2") is None

    def test_failed_lists_failed_webhook_events_oldest_first(self, store: EscrowStore) -> None:
        """Only failed events, by the time they were received, at most `limit` of them."""
        failed = WebhookStatus.FAILED
        with store.unit_of_work() as uow:
            uow.webhook_events.save(make_webhook_event("evt_b", status=failed, received_at=T0))
            uow.webhook_events.save(
                make_webhook_event("evt_a", status=failed, received_at=T0 + MINUTE)
            )
            uow.webhook_events.save(make_webhook_event("evt_done", received_at=T0))
            uow.commit()
        with self.read(store) as uow:
            assert [r.id for r in uow.webhook_events.failed(limit=10)] == ["evt_b", "evt_a"]
            assert [r.id for r in uow.webhook_events.failed(limit=1)] == ["evt_b"]

    def test_prune_drops_old_processed_and_ignored_webhook_events(self, store: EscrowStore) -> None:
        """Failed events stay for replay; an event received exactly at the cutoff stays."""
        cutoff = T0 + timedelta(days=1)
        old = cutoff - MINUTE
        with store.unit_of_work() as uow:
            uow.webhook_events.save(make_webhook_event("evt_old_done", received_at=old))
            uow.webhook_events.save(
                make_webhook_event("evt_old_ignored", status=WebhookStatus.IGNORED, received_at=old)
            )
            uow.webhook_events.save(
                make_webhook_event("evt_old_failed", status=WebhookStatus.FAILED, received_at=old)
            )
            uow.webhook_events.save(make_webhook_event("evt_at_cutoff", received_at=cutoff))
            uow.webhook_events.save(make_webhook_event("evt_new", received_at=cutoff + MINUTE))
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.webhook_events.prune(before=cutoff) == 2
            uow.commit()
        with self.read(store) as uow:
            remaining = {
                event_id
                for event_id in (
                    "evt_old_done",
                    "evt_old_ignored",
                    "evt_old_failed",
                    "evt_at_cutoff",
                    "evt_new",
                )
                if uow.webhook_events.get(event_id) is not None
            }
            assert uow.webhook_events.prune(before=cutoff) == 0
        assert remaining == {"evt_old_failed", "evt_at_cutoff", "evt_new"}
