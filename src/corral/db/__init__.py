"""Storage: tables, engine set-up, migrations. SQLite and PostgreSQL differ only here."""
