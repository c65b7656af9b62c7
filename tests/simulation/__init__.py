"""The deterministic simulation and the money oracle's own tests."""
