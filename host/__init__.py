"""Nimbus: a serverless function host running WebAssembly in a fresh sandbox per request."""

__version__ = "0.1.0"
