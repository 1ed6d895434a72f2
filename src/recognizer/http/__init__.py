"""HTTP/JSON, a WebSocket stream and a web page beside gRPC: the same engine, another door.

    server.py    uvicorn on the service's own event loop: listen, drain, stop
    app.py       the Starlette application: every route in one table
    api.py       classify, list models, health, readiness, metrics
    inputs.py    an HTTP request (raw image, multipart form or JSON) as a ClassifyRequest
    stream.py    the WebSocket stream: frames in, one answer each, counts at the end
    jsonmap.py   recognizer.v1 messages in the proto's JSON mapping
    errors.py    the engine's errors as HTTP codes, with gRPC's reasons and details
    openapi.py   the OpenAPI document, its schemas read from the proto
    page.py      the web page, its assets and the API docs, served from the package
    static/      the page: plain ES modules and CSS, no build step, nothing from elsewhere

Every request goes through Engine.classify or classify_stream like a gRPC call does,
with the same admission, batching, cache and limits, and answers the same messages.
"""
