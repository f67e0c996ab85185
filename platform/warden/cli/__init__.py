"""The `warden` command line: one small Typer app per command group."""
