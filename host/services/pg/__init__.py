"""The services on PostgreSQL: the same protocols as the LMDB backend, for hosts that
share one database (see ``services.py`` here, and ``host/services/factory.py``)."""
