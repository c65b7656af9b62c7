"""The service layer: `EscrowService` and its settings."""

from bountyescrow.service._reconcile_report import (
    Discrepancy,
    DiscrepancyKind,
    ReconciliationReport,
)
from bountyescrow.service._recovery import RecoveryReport
from bountyescrow.service._service import EscrowService
from bountyescrow.service._settings import EscrowSettings

__all__ = [
    "Discrepancy",
    "DiscrepancyKind",
    "EscrowService",
    "EscrowSettings",
    "ReconciliationReport",
    "RecoveryReport",
]
