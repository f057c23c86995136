"""What the API measures: the tokens of the batches it starts (the charge itself is a database transaction, and
a launcher wrapper sees every started batch without reaching into the enhance use case), and /metrics."""

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from core.contracts import BatchEnhanceInput
from core.vocabulary import TIERS, Tier
from services.launcher import BatchLauncher
from telemetry import metrics


class MeteredLauncher:
    """A launcher that counts the tokens of each batch it started."""

    def __init__(self, inner: BatchLauncher) -> None:
        self.inner = inner

    async def start(self, inp: BatchEnhanceInput) -> None:
        await self.inner.start(inp)
        metrics.TOKENS_CHARGED.labels(tier=inp.tier).inc(len(inp.job_ids) * TIERS[Tier(inp.tier)].cost)

    async def cancel(self, batch_id: str) -> None:
        await self.inner.cancel(batch_id)

    async def pause(self, batch_id: str) -> None:
        await self.inner.pause(batch_id)

    async def resume(self, batch_id: str) -> None:
        await self.inner.resume(batch_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


def add_metrics_route(app: FastAPI) -> None:
    """GET /metrics in Prometheus' text format (left out of the OpenAPI schema: it is for scrapers)."""

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
