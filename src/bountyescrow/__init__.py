"""bountyescrow: hold a bounty poster's money on Stripe and pay it to the hunter, or back.

The public names are listed here by hand; `tests/test_public_api.py` guards the list.
"""

from bountyescrow import errors
from bountyescrow.domain.dispute import Dispute
from bountyescrow.domain.escrow import Escrow, EscrowStatus
from bountyescrow.domain.events import DomainEvent
from bountyescrow.domain.fees import FeeSchedule, FeeSplit
from bountyescrow.domain.gateway_objects import GatewayEvent
from bountyescrow.domain.ledger import JournalEntry, Posting
from bountyescrow.domain.money import Money
from bountyescrow.domain.operation import Operation, OperationKind, OperationStatus
from bountyescrow.domain.payee import Payee
from bountyescrow.domain.records import AuditRecord, WebhookStatus
from bountyescrow.policy import RoleBasedPolicy
from bountyescrow.ports.policy import Actor, Decision
from bountyescrow.service import (
    Discrepancy,
    DiscrepancyKind,
    EscrowService,
    EscrowSettings,
    ReconciliationReport,
    RecoveryReport,
)

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "AuditRecord",
    "Decision",
    "Discrepancy",
    "DiscrepancyKind",
    "Dispute",
    "DomainEvent",
    "Escrow",
    "EscrowService",
    "EscrowSettings",
    "EscrowStatus",
    "FeeSchedule",
    "FeeSplit",
    "GatewayEvent",
    "JournalEntry",
    "Money",
    "Operation",
    "OperationKind",
    "OperationStatus",
    "Payee",
    "Posting",
    "ReconciliationReport",
    "RecoveryReport",
    "RoleBasedPolicy",
    "WebhookStatus",
    "__version__",
    "errors",
]
