"""Stand-ins for the outside services the example app in ``functions/`` calls."""
