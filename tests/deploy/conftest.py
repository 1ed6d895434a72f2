"""What the deploy/ tests share: the metric names a real server exports."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakes import colour_model, solid_png
from recognizer.client import Client
from support import ServerThread


@pytest.fixture(scope="session")
def exported_metrics() -> frozenset[str]:
    """Every sample name on a real server's /metrics, once each metric has a sample.

    The cache is on and calls have been answered, so every metric the server can export
    is on the page (a labelled counter appears on its first use).
    """
    with ServerThread([colour_model("colours")], metrics_port=0, cache_entries=8) as running:
        with Client(running.address) as client:
            client.classify(solid_png((200, 10, 10)))
            client.classify(solid_png((200, 10, 10)))  # a cache hit
        url = f"http://127.0.0.1:{running.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
    return frozenset(
        sample.name for family in text_string_to_metric_families(page) for sample in family.samples
    )
