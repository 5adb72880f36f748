"""The file driver: one sparse raw file per volume in a local directory."""
