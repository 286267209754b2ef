"""SQLite metadata database: connections, pragmas and numbered migrations."""

from appliance.data.connection import connect_async, connect_sync
from appliance.data.migrate import migrate, schema_version

__all__ = ["connect_async", "connect_sync", "migrate", "schema_version"]
