"""Turns a function's source directory into a .wasm, incrementally, with the right toolchain."""
