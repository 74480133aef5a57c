"""The ``eagle3`` command line: thin Typer commands over the library."""
