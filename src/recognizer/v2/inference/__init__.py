"""Triton's inference protocol: stubs generated from proto/triton by the build."""
