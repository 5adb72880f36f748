"""Volume service: the manager (sole caller of drivers) and its RPC client."""
