"""API-side logic: validate, start a transition (compare-and-swap), then send RPC."""
