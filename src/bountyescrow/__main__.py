"""`python -m bountyescrow ...` runs the command-line interface."""

from bountyescrow.cli import main

raise SystemExit(main())
