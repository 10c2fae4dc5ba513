"""PostgreSQL backend that starts the embedded server on the first connection, not before.

Settings name this backend when ``DATABASE_URL`` is unset. Importing settings, running
``--help`` or any command that never touches the database therefore starts nothing.
"""

from django.db.backends.postgresql import base

from energy.db.embedded import server as embedded_pg


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        server = embedded_pg.ensure_running()
        params["host"] = str(server.socket_dir)
        params["port"] = server.port
        return params
