"""The `cinderblock` command."""
