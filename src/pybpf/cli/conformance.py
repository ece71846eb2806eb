"""CLI commands (filled in by their package)."""

commands: list = []
