"""Departments, OAuth clients, roles and access tokens (issued and verified)."""
