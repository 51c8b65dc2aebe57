"""``python -m kitchencam`` runs the CLI."""

from kitchencam.cli import main

main()
