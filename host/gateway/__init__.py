"""The HTTP face of Nimbus: function routes, the admin API, and serving them."""

from host.gateway.app import create_app

__all__ = ["create_app"]
