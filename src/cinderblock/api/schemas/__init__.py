"""Request body schemas (JSON schema, Draft 4), one module per resource."""
