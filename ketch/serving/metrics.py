"""/metrics: prometheus_client's default registry (the process and GC collectors, and whatever
controlplane/metrics.py or nodeagent/metrics.py registered), in the format the scraper's Accept
header asks for (OpenMetrics for Prometheus, the text format otherwise).

Rendering runs collectors, so it goes to a thread and never holds the event loop, as
prometheus_client's own server does: collectors must be safe to run off the loop.
"""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .http import Request, Response

METRICS_PATH = "/metrics"


async def render(request: Request, registry: CollectorRegistry = REGISTRY) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = await asyncio.to_thread(encoder, registry)
    return Response(200, body, content_type)
