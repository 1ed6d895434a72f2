"""Python clients for a recognizer server: `Client` (blocking) and `AsyncClient` (asyncio).

Both return the generated recognizer.v1 messages and raise grpc.RpcError on failure;
`error_status(error)` reads the google.rpc.Status details a failed call carries.
"""

from recognizer.client.clients import AsyncClient, Client, ImageSource, error_status

__all__ = ["AsyncClient", "Client", "ImageSource", "error_status"]
