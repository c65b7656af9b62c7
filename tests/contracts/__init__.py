"""Contract suites run against each of our adapters."""
