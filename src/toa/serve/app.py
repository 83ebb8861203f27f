"""`toa serve`'s HTTP side: an OpenAI-compatible server (aiohttp) over a `ServeService`.

Routes: ``GET /v1/models``; ``POST /v1/chat/completions`` (model ``toa`` / ``toa:<strategy>``:
a search; an agent's name: the request goes to that agent as it is, answer relayed, not
stored); ``GET /health``. With ``serve.api_key_env`` every ``/v1`` route needs ``Authorization:
Bearer <key>`` (compared in constant time, never logged). Errors are OpenAI's error JSON with
the status that says what happened (400 a bad field, named; 401; 404 an unknown model; 413 a
body over ``serve.max_request_bytes``; 429 every search slot taken, with Retry-After; 503 no
agent can answer, or the server is stopping).

A client that disconnects cancels its search: aiohttp cancels the handler (the streamed case
cancels the search task), so no further call is sent for it. Stopping (SIGTERM, SIGINT: set
`stop`) closes the listening socket, lets the searches in flight finish for up to
``serve.drain_s`` seconds, then cancels what is left and closes the directory.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from toa.errors import ConfigError, ServeRequestError
from toa.serve.protocol import (
    MODEL,
    SearchRequest,
    completion_body,
    error_body,
    first_chunk,
    model_list,
    parse_search_request,
    stream_chunks,
)
from toa.serve.service import ServeService, new_prompt_id
from toa.settings import RunSettings

__all__ = ["build_app", "check_bind", "serve"]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SERVICE: web.AppKey[ServeService] = web.AppKey("service", ServeService)
_KEY: web.AppKey[str] = web.AppKey("key", str)
_PROXY: web.AppKey[aiohttp.ClientSession] = web.AppKey("proxy", aiohttp.ClientSession)
_STATE: web.AppKey[dict[str, Any]] = web.AppKey("state", dict)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: RunSettings, *, insecure: bool) -> str | None:
    """The bearer key clients must send (None: no key), after the checks made before binding:
    the key variable is set, and a non-loopback address has a key unless `insecure`."""
    env = (settings.config_data.get("serve") or {}).get("api_key_env")
    key = None
    if env is not None:
        key = os.environ.get(env)
        if not key:
            raise ConfigError(
                f"{settings.source}: serve.api_key_env names {env}, which is not set or empty; "
                "export the key clients must send, then start again"
            )
    if not is_loopback(host) and key is None and not insecure:
        raise ConfigError(
            f"--host {host} is not a loopback address and no key protects it: set "
            "serve.api_key_env (clients then send `Authorization: Bearer <key>`), or pass "
            "--insecure to serve without one"
        )
    return key


def _error(error: ServeRequestError) -> web.Response:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    return web.json_response(error_body(error), status=error.status, headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServeRequestError as exc:
        return _error(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(ServeRequestError(f"request body too large: {exc.text}", status=413))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "model_not_found" if exc.status == 404 else None
        return _error(
            ServeRequestError(
                f"{request.method} {request.path}: {exc.reason}", status=exc.status, code=code
            )
        )


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.app.get(_KEY)
    if key and request.path.startswith("/v1"):
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {key}"
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            raise ServeRequestError(
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                status=401,
                code="invalid_api_key",
            )
    return await handler(request)


async def _models(request: web.Request) -> web.Response:
    service = request.app[_SERVICE]
    return web.json_response(model_list(service.agents, request.app[_STATE]["created"]))


async def _health(request: web.Request) -> web.Response:
    service = request.app[_SERVICE]
    state = request.app[_STATE]
    return web.json_response(
        {
            "status": "stopping" if state["stopping"] else "ok",
            "searches": service.active,
            "served": service.served,
        }
    )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ServeRequestError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ServeRequestError("the request body must be a JSON object")
    return body


async def _chat(request: web.Request) -> web.StreamResponse:
    service = request.app[_SERVICE]
    body = await _body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ServeRequestError(
            "'model' is required: toa, toa:<strategy> or an agent's name", param="model"
        )
    if model in service.agents:
        return await _proxy(request, body, model)
    if model != MODEL and not model.startswith(f"{MODEL}:"):
        raise ServeRequestError(
            f"model {model!r} does not exist here; the models are {MODEL}, {MODEL}:<strategy> "
            f"and the agents {', '.join(service.agents)} (GET /v1/models)",
            status=404,
            param="model",
            code="model_not_found",
        )
    if request.app[_STATE]["stopping"]:
        raise ServeRequestError("the server is stopping", status=503, error_type="server_error")
    search = parse_search_request(
        body,
        default_strategy=service.settings.strategy_name,
        default_budget=service.settings.budget,
        max_budget=service.limits.max_budget,
        max_messages=service.limits.max_messages,
    )
    service.check_capacity()  # a 429 / 503 before any byte of a stream
    if search.stream:
        return await _stream(request, service, search)
    prompt, outcome = await service.search(search)
    tree = outcome.tree.to_dict() if outcome.tree is not None and search.return_tree else None
    return web.json_response(completion_body(f"chatcmpl-{prompt.id}", search, outcome.result, tree))


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _stream(
    request: web.Request, service: ServeService, search: SearchRequest
) -> web.StreamResponse:
    """Server-sent events: the roles at once, a comment line every ``serve.keepalive_s`` while
    the search runs, then the answer in chunks, the usage chunk, ``[DONE]``."""
    prompt_id = new_prompt_id()
    completion_id = f"chatcmpl-{prompt_id}"
    task = service.start(search, prompt_id)  # the slot is taken before any byte is sent
    created = int(time.time())
    started = time.monotonic()
    try:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(_event(first_chunk(completion_id, search, created)))
        while True:
            done, _ = await asyncio.wait({task}, timeout=service.limits.keepalive_s)
            if done:
                break
            elapsed = time.monotonic() - started
            await response.write(f": toa searching ({elapsed:.0f} s)\n\n".encode())
        try:
            _prompt, outcome = task.result()
        except ServeRequestError as exc:
            await response.write(_event(error_body(exc)))
        else:
            tree = outcome.tree.to_dict() if outcome.tree and search.return_tree else None
            for chunk in stream_chunks(completion_id, search, outcome.result, tree, created):
                await response.write(_event(chunk))
        await response.write(b"data: [DONE]\n\n")
    finally:
        if not task.done():  # the client went away (a failed write, or a cancelled handler)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await response.write_eof()
    return response


async def _proxy(request: web.Request, body: dict[str, Any], agent: str) -> web.StreamResponse:
    """Send the request to the agent's first endpoint with its model id and key; relay the
    answer (a stream chunk by chunk)."""
    service = request.app[_SERVICE]
    spec = next(a for a in service.settings.agents if a.name == agent)
    url = spec.base_urls[0].rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if spec.api_key_env is not None:
        headers["Authorization"] = f"Bearer {os.environ.get(spec.api_key_env, '')}"
    forward = {**body, "model": spec.model}
    session = request.app[_PROXY]
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s, connect=spec.connect_timeout_s)
    try:
        async with session.post(url, json=forward, headers=headers, timeout=timeout) as upstream:
            if not forward.get("stream"):
                return web.Response(
                    body=await upstream.read(),
                    status=upstream.status,
                    content_type=upstream.content_type,
                )
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "text/event-stream")},
            )
            await response.prepare(request)
            async for piece in upstream.content.iter_any():
                await response.write(piece)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServeRequestError(
            f"agent {agent!r} at {spec.base_urls[0]} did not answer ({type(exc).__name__})",
            status=502,
            error_type="server_error",
        ) from None


def build_app(service: ServeService, key: str | None) -> web.Application:
    """The aiohttp application over an open `service`."""
    app = web.Application(
        client_max_size=service.limits.max_request_bytes, middlewares=[_errors, _auth]
    )
    app[_SERVICE] = service
    if key is not None:
        app[_KEY] = key
    app[_STATE] = {"created": int(time.time()), "stopping": False}

    async def proxy_session(app: web.Application) -> Any:
        async with aiohttp.ClientSession() as session:
            app[_PROXY] = session
            yield

    app.cleanup_ctx.append(proxy_session)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/health", _health)
    return app


async def serve(
    settings: RunSettings,
    *,
    serve_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    insecure: bool = False,
    stop: asyncio.Event,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until `stop` is set; returns the number of searches served.

    Raises `ConfigError` (bad bind, unset key, a directory that is not a serve directory) before
    listening, `RunLockedError` when another process uses `serve_dir`, `OSError` when the port
    cannot be bound. `ready` gets the base URL (``http://host:port/v1``) once listening."""
    key = check_bind(host, settings, insecure=insecure)
    service = ServeService(settings, serve_dir)
    await service.open()
    try:
        app = build_app(service, key)
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            shutdown_timeout=service.limits.drain_s,
            access_log=None,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0]
            shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
            url = f"http://{shown}:{bound[1]}/v1"
            logger.info("serving %s on %s (store %s)", MODEL, url, serve_dir)
            if ready is not None:
                ready(url)
            await stop.wait()
            app[_STATE]["stopping"] = True
            if service.active:
                logger.warning(
                    "stopping: waiting up to %.0f s for %d search(es) in flight",
                    service.limits.drain_s,
                    service.active,
                )
        finally:
            await runner.cleanup()  # stop listening, drain in-flight handlers, cancel the rest
        return service.served
    finally:
        await service.close()
