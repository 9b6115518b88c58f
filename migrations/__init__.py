"""taskflow's Alembic scripts; installed as the package ``taskflow._migrations``."""
