"""The webhook view: the raw request body, untouched, to the dispatcher."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bountyescrow.webhooks import WebhookDispatcher


def get_dispatcher() -> WebhookDispatcher:
    """The dispatcher named by ``settings.BOUNTYESCROW_WEBHOOK_DISPATCHER``."""
    factory = settings.BOUNTYESCROW_WEBHOOK_DISPATCHER
    if isinstance(factory, str):
        factory = import_string(factory)
    dispatcher: WebhookDispatcher = factory()
    return dispatcher


@csrf_exempt  # Stripe cannot send a CSRF token; the signature authenticates the request
@require_POST  # anything else: 405
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify and apply one Stripe event.

    ``request.body`` is the bytes Stripe signed. Never ``json.loads`` it and dump it again,
    and never read ``request.POST``: the signature covers the exact bytes.
    """
    answer = get_dispatcher().handle(request.body, request.headers)
    return HttpResponse(answer.body, status=answer.status, headers=answer.headers)
