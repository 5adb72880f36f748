"""Persistence: engine and sessions, models, repositories (all SQL), migrations."""
