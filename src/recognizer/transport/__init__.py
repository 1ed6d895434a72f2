"""The gRPC transport: servicer, status mapping and server assembly around the engine."""
