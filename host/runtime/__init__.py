"""Everything that touches wasmtime: the engine, the module cache, the ABI and invoke."""
