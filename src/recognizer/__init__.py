"""recognizer: a gRPC image-recognition microservice with Chinese and English labels.

The package is laid out by concern, and data flows one way through it:

    transport/  gRPC servicer, status mapping, server assembly   (grpc)
    engine/     admission, batching, worker threads, backends    (no grpc)
    models/     specs, sources, loading, preprocessing, labels   (no grpc)
    client/     Python clients over the generated stubs
    bench/      the `recognizer bench` load generator            (no torch)
    v1/         stubs generated from proto/recognizer/v1 by the build
    v2/         Triton's inference protocol (KServe v2) over the same engine

Subpackages do not re-export their modules, so importing the client never imports torch.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
