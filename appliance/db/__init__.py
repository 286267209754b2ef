"""SQLite metadata database: connections, pragmas and numbered migrations."""

from appliance.db.connection import connect_async, connect_sync
from appliance.db.migrate import migrate, schema_version

__all__ = ["connect_async", "connect_sync", "migrate", "schema_version"]
