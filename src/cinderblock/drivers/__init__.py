"""Volume driver SDK (base classes, typed refs) and the drivers themselves.

Nothing in this package imports from db, api, services or rpc: drivers are
told about volumes through plain refs and answer with model updates.
"""
