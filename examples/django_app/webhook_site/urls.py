"""The site's URLs: the platform and the Connect webhook endpoints (see docs/stripe.md)."""

from __future__ import annotations

from django.urls import path

from webhook_site.views import stripe_webhook

urlpatterns = [
    path("stripe/webhooks", stripe_webhook, name="stripe-webhooks"),
    path("stripe/connect-webhooks", stripe_webhook, name="stripe-connect-webhooks"),
]
