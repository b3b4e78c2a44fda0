"""The bridge between guests and services: one module per capability's host imports."""
