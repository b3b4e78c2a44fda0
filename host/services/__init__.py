"""Managed services on LMDB: tables, blobs, queues, outbox, staged effects (no wasmtime/HTTP)."""
