"""pgperfmon: a PostgreSQL performance monitor that lives inside the database it watches."""

__version__ = "0.2.0"
