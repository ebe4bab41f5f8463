"""The ``exchange`` command line (typer + rich)."""
