"""The gRPC transport: servicer, the door, ending calls with a status, server assembly."""
