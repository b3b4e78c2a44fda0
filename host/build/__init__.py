"""Turns a function's source directory into a .wasm, incrementally, with the right toolchain."""

from host.build.builder import BuildResult, build_function, detect_toolchain

__all__ = ["BuildResult", "build_function", "detect_toolchain"]
