"""Subcommands of the `openlpu` command, one module each (see `openlpu.cli.COMMANDS`)."""
