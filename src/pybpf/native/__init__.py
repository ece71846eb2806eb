"""Native code generated with llvmlite: atomic primitives now, the native engine later."""
