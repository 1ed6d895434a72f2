"""Python clients for a recognizer server: `Client` (blocking) and `AsyncClient` (asyncio).

Both return the generated recognizer.v1 messages and raise grpc.RpcError on failure;
`error_status(error)` reads the google.rpc.Status details a failed call carries.
`Credentials` says how to connect: TLS, a client certificate, a token.
"""

from recognizer.client.channel import Credentials
from recognizer.client.clients import AsyncClient, Client, ImageSource, error_status

__all__ = ["AsyncClient", "Client", "Credentials", "ImageSource", "error_status"]
