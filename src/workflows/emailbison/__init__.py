"""EmailBison, the cold-email sending platform: typed async client and its errors.

:class:`EmailBisonClient` is the only way the workflows talk to EmailBison. The local
stand-in server used by tests and the demo lives in :mod:`workflows.standins.emailbison_server`
and is deliberately not imported here.
"""

from __future__ import annotations

from workflows.emailbison.client import (
    MAX_IDS_PER_ATTACH,
    MAX_LEADS_PER_REQUEST,
    EmailBisonClient,
)
from workflows.emailbison.errors import (
    EmailBisonAuthError,
    EmailBisonError,
    EmailBisonNotFound,
    EmailBisonPermanentError,
    EmailBisonRetryableError,
    EmailBisonValidationError,
    LeadValidationError,
    nothing_done,
)
from workflows.emailbison.models import Campaign, CustomVariable, LeadIn, LeadOut

__all__ = [
    "MAX_IDS_PER_ATTACH",
    "MAX_LEADS_PER_REQUEST",
    "Campaign",
    "CustomVariable",
    "EmailBisonAuthError",
    "EmailBisonClient",
    "EmailBisonError",
    "EmailBisonNotFound",
    "EmailBisonPermanentError",
    "EmailBisonRetryableError",
    "EmailBisonValidationError",
    "LeadIn",
    "LeadOut",
    "LeadValidationError",
    "nothing_done",
]
