"""``python -m eagle3cli`` runs the ``eagle3`` command line."""

from eagle3cli.cli.main import main

main()
