"""The HTTP face of Nimbus: function routes, the admin API and the gateway app."""
