"""The inference engine: admission, batching, worker threads and backends; no gRPC here."""
