"""Admin API for accounts, their configuration and audit chains (API Gateway REST → Lambda)."""
