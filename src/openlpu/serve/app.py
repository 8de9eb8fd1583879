"""The service: an engine behind a request scheduler, a rate limiter and the API, as a FastAPI app.

`build_engine` makes the served engine: the int8 step graph's tokens (its numpy reference, equal bit for
bit to the compiled program), each step's seconds from its compiled program (`CompiledTiming`), and one
model replica per chip (concurrency = chips), which needs the model's int8 weights to fit one chip's SRAM.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from openlpu.chip.spec import TSP_V1
from openlpu.errors import UserError
from openlpu.models.registry import load_model
from openlpu.runtime.compiled_timing import CompiledTiming
from openlpu.runtime.engine import Engine
from openlpu.runtime.lpu_engine import PREFILL_TOKENS
from openlpu.runtime.reference_engine import ReferenceEngine
from openlpu.serve.completions import provenance
from openlpu.serve.errors import ApiError
from openlpu.serve.ratelimit import RateLimiter
from openlpu.serve.routes import router
from openlpu.serve.scheduler import Scheduler

API_PREFIXES = ("/openai/v1", "/v1")
NUMERICS = "int8"  # SmolLM2's fp16 weights (269 MB) do not fit one chip
CACHE_BUCKET = 64  # KV cache slots a step program is compiled for at a time (as lpu_engine.LpuEngine)
MAX_BODY_BYTES = 1 << 20


@dataclass
class Service:
    engine: Engine
    scheduler: Scheduler
    limiter: RateLimiter
    api_key: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    created: int = field(default_factory=lambda: int(time.time()))


def build_engine(model: str, chips: int = 1, cache_dir: Path | None = None) -> ReferenceEngine:
    if chips < 1:
        raise UserError(f"--chips {chips} is not a number of chips; give 1 or more")
    loaded = load_model(model)
    needed, sram = loaded.config.weight_bytes("int8"), TSP_V1.sram_bytes
    if needed > sram:
        raise UserError(f"{model} needs {needed / 1e6:.0f} MB of int8 weights, more than one chip's "
                        f"{sram / 1e6:.0f} MB of SRAM; the service runs one replica per chip, so serve a smaller "
                        "model")
    timing = CompiledTiming(loaded, NUMERICS, TSP_V1, CACHE_BUCKET, cache_dir, PREFILL_TOKENS)
    return ReferenceEngine(loaded, timing, chips, NUMERICS, CACHE_BUCKET, TSP_V1, PREFILL_TOKENS)


def compiled_steps(timing) -> dict:
    """The step programs compiled so far (cycles by cache slots), for a timing read from compiled programs."""
    return {"compiled_steps": timing.compiled()} if isinstance(timing, CompiledTiming) else {}


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.scheduler.start()
        yield
        service.scheduler.stop()

    app = FastAPI(title="openlpu", summary="A Groq-compatible API backed by simulated LPUs", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.service = service
    for prefix in API_PREFIXES:
        app.include_router(router, prefix=prefix)

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> str:
        return resources.files("openlpu.serve").joinpath("static/index.html").read_text()

    @app.get("/health")
    async def health() -> dict:
        engine = service.engine
        return {"status": "ok", "model": engine.model_id, "pace": service.scheduler.pace, **provenance(engine),
                **compiled_steps(engine.timing), **service.scheduler.stats()}

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return ApiError(err.status_code, f"{request.method} {request.url.path}: {err.detail}", code=code).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return ApiError(400, f"invalid request: {err.errors()[0]['msg']}").response()

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        return ApiError(500, f"the server failed: {type(err).__name__}; the request was not completed",
                        type="server_error").response()

    return app
