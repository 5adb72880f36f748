"""Placement: which backend (host@backend#pool) gets a new volume."""
