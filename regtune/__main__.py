"""`python -m regtune` is the `regtune` command."""

from regtune.cli.app import main

main()
