"""A DNS server on loopback whose A records a test changes as it goes, as Kubernetes changes
a headless Service's records when pods come and go.

gRPC's resolver asks it when the target names it as the authority:

    with Zone() as zone:
        zone.records["recognizer.test"] = ["127.0.0.1"]
        Client(f"dns://{zone.address}/recognizer.test:{port}")
"""

from __future__ import annotations

from typing import Any, Self

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):
    """Answers A queries from `records` (name: addresses, with a TTL of 0); any other
    name or type gets an empty answer."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.queries = 0
        self._server = DNSServer(
            self, address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply")
        )

    @property
    def address(self) -> str:
        host, port = self._server.server.server_address
        return f"{host}:{port}"

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        if request.q.qtype == QTYPE.A:
            self.queries += 1
            for address in self.records.get(name, []):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply

    def __enter__(self) -> Self:
        self._server.start_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
        self._server.server.server_close()
