"""Durable multi-step workflows: the run store, the engine and its runner thread."""
