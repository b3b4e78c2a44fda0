"""What starts an invocation besides HTTP: queues, schedules, storage and bus events."""
