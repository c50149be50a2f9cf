"""``python -m dispatcher`` runs the CLI."""

from dispatcher.cli import main

main()
