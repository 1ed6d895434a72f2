"""Triton's inference protocol (KServe v2, the Open Inference Protocol) over the same engine.

requests.py is a request without its wire format; recognizer.transport.v2 serves it over
gRPC (inference.GRPCInferenceService) and recognizer.http.v2 over HTTP/JSON; inference/
holds the stubs generated from proto/triton by the build.
"""
