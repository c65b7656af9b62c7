"""Adapters: the ports implemented on real infrastructure (Stripe, SQL databases)."""
