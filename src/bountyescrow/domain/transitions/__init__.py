"""Pure transitions of the escrow aggregate.

Each function takes the current state and one command or gateway fact and returns an
`Outcome`: the new escrow, the operations created or changed, balanced journal entries and
domain events. Nothing here reads a clock, a database or the network; time and new ids come in
as arguments. A refused command raises a `bountyescrow.errors` error and changes nothing.

The transitions live in one private module per lifecycle area (`_funding`, `_cancel`,
`_release`, `_refund`, `_reversal`, `_disputes`), each importing only `_common` (the
`Outcome`, shared helpers and the escrow's debt). Import them from this package.
"""

from bountyescrow.domain.transitions._cancel import complete_cancel, start_cancel
from bountyescrow.domain.transitions._common import (
    GATEWAY_ACTOR,
    SHORTFALL_SETTLED,
    Outcome,
    check_amount,
    fail_operation,
    metadata_of,
)
from bountyescrow.domain.transitions._disputes import (
    apply_dispute,
    apply_fraud_warning,
    clear_fraud_warning,
)
from bountyescrow.domain.transitions._funding import (
    apply_payment,
    record_payment_created,
    start_funding,
)
from bountyescrow.domain.transitions._refund import (
    adopt_external_refund,
    apply_refund,
    start_refund,
)
from bountyescrow.domain.transitions._release import (
    cancel_waiting,
    complete_release,
    payee_ready,
    release_source,
    start_release,
    wait_for_payee,
)
from bountyescrow.domain.transitions._reversal import (
    adopt_external_reversal,
    complete_reversal,
    reversal_fee_share,
    start_reversal,
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
    "release_source",
    "reversal_fee_share",
    "start_cancel",
    "start_funding",
    "start_refund",
    "start_release",
    "start_reversal",
    "wait_for_payee",
]
