"""Python that runs inside PostgreSQL (PL/Python). Plain modules: tests import them directly."""
