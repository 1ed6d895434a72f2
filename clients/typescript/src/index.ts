/**
 * A client for recognizer.v1 over gRPC: the messages and service generated from
 * proto/recognizer/v1 by buf (protoc-gen-es), on Connect's gRPC transport for Node.
 */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Recognizer } from "./gen/recognizer/v1/recognizer_pb.js";

export * from "./gen/recognizer/v1/recognizer_pb.js";
export type RecognizerClient = Client<typeof Recognizer>;

export interface Options {
  /** Sent as `authorization: Bearer TOKEN` on every call, when the server checks tokens. */
  token?: string;
  /** PEM CA certificate(s) to trust: the server then speaks TLS (https). */
  ca?: string | Buffer;
}

/** A client of the server at `address` ("host:port"). */
export function connect(address: string, options: Options = {}): RecognizerClient {
  const interceptors: Interceptor[] = [];
  const { token, ca } = options;
  if (token !== undefined) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  const transport = createGrpcTransport({
    baseUrl: `${ca === undefined ? "http" : "https"}://${address}`,
    nodeOptions: ca === undefined ? {} : { ca },
    interceptors,
  });
  return createClient(Recognizer, transport);
}
