"""Durable PostgreSQL job orchestrator."""
