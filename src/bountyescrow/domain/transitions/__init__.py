"""Pure transitions of the escrow aggregate.

Each function takes the current state and one command or gateway fact and returns an
`Outcome`: the new escrow, the operations created or changed, balanced journal entries and
domain events. Nothing here reads a clock, a database or the network; time and new ids come in
as arguments. A refused command raises a `bountyescrow.errors` error and changes nothing.
"""

from bountyescrow.domain.transitions._common import (
    GATEWAY_ACTOR,
    SHORTFALL_SETTLED,
    Outcome,
    adopt_external_refund,
    adopt_external_reversal,
    apply_dispute,
    apply_fraud_warning,
    apply_payment,
    apply_refund,
    cancel_waiting,
    check_amount,
    clear_fraud_warning,
    complete_cancel,
    complete_release,
    complete_reversal,
    fail_operation,
    metadata_of,
    payee_ready,
    record_payment_created,
    reversal_fee_share,
    start_cancel,
    start_funding,
    start_refund,
    start_release,
    start_reversal,
    wait_for_payee,
)

__all__ = [
    "GATEWAY_ACTOR",
    "SHORTFALL_SETTLED",
    "Outcome",
    "adopt_external_refund",
    "adopt_external_reversal",
    "apply_dispute",
    "apply_fraud_warning",
    "apply_payment",
    "apply_refund",
    "cancel_waiting",
    "check_amount",
    "clear_fraud_warning",
    "complete_cancel",
    "complete_release",
    "complete_reversal",
    "fail_operation",
    "metadata_of",
    "payee_ready",
    "record_payment_created",
    "reversal_fee_share",
    "start_cancel",
    "start_funding",
    "start_refund",
    "start_release",
    "start_reversal",
    "wait_for_payee",
]
