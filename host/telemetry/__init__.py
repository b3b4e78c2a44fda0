"""What happened: a record of every invocation, for logs, metrics and billing."""
