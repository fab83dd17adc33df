"""`python -m ui` is the same as the `mimicsafe` command."""

from ui.cli import main

main()
