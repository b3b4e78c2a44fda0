"""The platform: wires runtime, hostcalls, services, registry and telemetry; deploys apps."""
