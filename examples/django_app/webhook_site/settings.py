"""The example site's only settings module: no database, no apps, one view.

    cd examples/django_app
    DATABASE_URL=postgresql+psycopg://app@db/app STRIPE_API_KEY=sk_test_... \\
    STRIPE_WEBHOOK_SECRETS=whsec_platform,whsec_connect DJANGO_SECRET_KEY=... \\
        python manage.py runserver
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-set-DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver").split(",")

ROOT_URLCONF = "webhook_site.urls"
WSGI_APPLICATION = "webhook_site.wsgi.application"
INSTALLED_APPS: list[str] = []
# CSRF protection stays on for the host's own views; the webhook view is exempt (Stripe cannot
# send a CSRF token; the signature authenticates it instead).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES: dict[str, Any] = {}  # bountyescrow keeps its own tables (DATABASE_URL below)
USE_TZ = True
# Django refuses larger bodies (400) before the view reads them; Stripe's are a few kB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

#: A callable (or its dotted path) returning the `WebhookDispatcher` the view uses.
BOUNTYESCROW_WEBHOOK_DISPATCHER: Any = "webhook_site.escrow.dispatcher_from_env"
