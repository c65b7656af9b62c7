"""A minimal Django project that receives Stripe webhooks for bountyescrow."""
