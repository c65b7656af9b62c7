"""The service layer: `EscrowService` and its settings."""

from bountyescrow.service._recovery import RecoveryReport
from bountyescrow.service._service import EscrowService
from bountyescrow.service._settings import EscrowSettings

__all__ = ["EscrowService", "EscrowSettings", "RecoveryReport"]
