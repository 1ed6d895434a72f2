"""The recognizer.v1 contract: stubs generated from proto/recognizer/v1 by the build."""
