"""Subcommands of the ``imgcurate`` command line, one module each."""
