"""FastAPI integration: injection, lifecycle, the admin API and dashboard."""
