"""Contract test suites for the ports: subclass one to run it against your adapter."""
