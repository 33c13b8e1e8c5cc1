"""The sandbox's HTTP face: Retell's routes plus a few unauthenticated controls.

Retell routes answer exactly as `Sandbox` decides, after two steps every request
goes through: the bearer key is checked (401 otherwise, without echoing the key),
then the first matching fault, if any, shapes the answer (see `faults`). Error
bodies always read `{"status": "error", "message": ...}`, also for unknown routes.

The app's lifespan runs a `WebhookDispatcher` in the server's event loop, which
sends the calls' signed webhooks (see `webhooks`) and stops with the server.

Control routes live under `/sandbox/` and need no key, so the server binds to the
loopback interface by default:

    GET    /sandbox/health                     {"status": "ok"}
    GET    /sandbox/stats                      Sandbox.stats()
    POST   /sandbox/reset                      Sandbox.reset()
    GET    /sandbox/faults                     armed faults and their counters
    POST   /sandbox/faults                     one Fault or WebhookFault, or a list
    DELETE /sandbox/faults                     Sandbox.clear_faults()
    POST   /sandbox/webhook-url                {"url": "http://..." | null,
                                                "agent_id": optional}
    POST   /sandbox/outcomes                   {"+14155550123": Outcome | null, ...}
    POST   /sandbox/phone-numbers/{n}/cps      {"cps": 3}
    GET    /sandbox/recordings/{call_id}.wav   silent audio behind recording_url
    GET    /sandbox/logs/{call_id}.txt         timeline behind public_log_url
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .dispatcher import WebhookDispatcher
from .errors import ApiError, bad_request
from .faults import Fault, WebhookFault, parse_fault
from .listing import named_call_ids
from .outcomes import Outcome
from .state import Sandbox

logger = logging.getLogger(__name__)

Handler = Callable[[Sandbox, Request, Any], Response]

_UNAUTHORIZED = ApiError(
    401,
    "Missing or invalid API key; send the header 'Authorization: Bearer <key>'.",
)
_PAUSE_STEP_SECONDS = 0.05
_OUTCOMES = TypeAdapter(dict[str, Outcome | list[Outcome] | None])


@dataclass(frozen=True)
class _Endpoint:
    """A Retell route: how it is called, its fault name and its handler."""

    method: str
    template: str
    name: str
    handler: Handler


def create_app(sandbox: Sandbox, closing: threading.Event | None = None) -> Starlette:
    """Build the ASGI app that serves `sandbox`.

    Args:
        sandbox: The world to serve.
        closing: Set when the server shuts down, to cut hanging answers short.

    Returns:
        A Starlette application.
    """
    closing = closing or threading.Event()
    routes = [_retell_route(sandbox, endpoint, closing) for endpoint in _ENDPOINTS]
    routes += _control_routes(sandbox)

    # Known shortcoming: when uvicorn is forced to exit (a shutdown that outlasts
    # SandboxServer.stop's timeout), it skips the lifespan's end; the loop's
    # teardown then cancels the deliveries, but the HTTP client is not closed.
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dispatcher = WebhookDispatcher(sandbox)
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop()

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )


# -- Retell routes --------------------------------------------------------------


def _retell_route(
    sandbox: Sandbox, endpoint: _Endpoint, closing: threading.Event
) -> Route:
    route_key = f"{endpoint.method} {endpoint.template}"

    async def serve(request: Request) -> Response:
        sandbox.record_request(route_key, call_id=request.path_params.get("call_id"))
        response = await _answer(sandbox, endpoint, request, closing)
        status = "dropped" if isinstance(response, _DroppedResponse) else None
        sandbox.record_response(status or response.status_code)
        return response

    return Route(endpoint.template, serve, methods=[endpoint.method])


async def _answer(
    sandbox: Sandbox, endpoint: _Endpoint, request: Request, closing: threading.Event
) -> Response:
    if not sandbox.is_authorized(request.headers.get("authorization")):
        return _error(_UNAUTHORIZED)
    try:
        body = await _json_body(request)
    except ApiError as exc:
        return _error(exc)

    fault = sandbox.take_fault(
        endpoint.name,
        call_id=request.path_params.get("call_id"),
        to_number=_body_to_number(endpoint, body),
        listed_call_ids=_body_call_ids(endpoint, body),
    )
    if fault is None:
        return _process(sandbox, endpoint, request, body)
    logger.debug("Fault %s applies to %s", fault.action, endpoint.name)
    return await _with_fault(fault, sandbox, endpoint, request, body, closing)


async def _with_fault(
    fault: Fault,
    sandbox: Sandbox,
    endpoint: _Endpoint,
    request: Request,
    body: Any,
    closing: threading.Event,
) -> Response:
    """Answer a request the way its fault says (see the `faults` module)."""
    if fault.action == "error":
        return _fault_error(fault)
    if fault.action == "delay":
        await _pause(request, fault.seconds, closing)

    response = _process(sandbox, endpoint, request, body)
    if fault.action == "hang":
        await _pause(request, fault.seconds, closing)
    if fault.action == "drop":
        return _DroppedResponse(response)
    return response


def _process(
    sandbox: Sandbox, endpoint: _Endpoint, request: Request, body: Any
) -> Response:
    try:
        return endpoint.handler(sandbox, request, body)
    except ApiError as exc:
        return _error(exc)


async def _json_body(request: Request) -> Any:
    if request.method == "GET":
        return None
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request("The request body is not valid JSON.") from exc


def _body_call_ids(endpoint: _Endpoint, body: Any) -> frozenset[str] | None:
    if endpoint.name != "list-calls" or not isinstance(body, dict):
        return None
    return named_call_ids(body.get("filter_criteria"))


def _body_to_number(endpoint: _Endpoint, body: Any) -> str | None:
    if endpoint.name != "create-phone-call" or not isinstance(body, dict):
        return None
    to_number = body.get("to_number")
    return to_number if isinstance(to_number, str) else None


async def _pause(request: Request, seconds: float, closing: threading.Event) -> None:
    """Wait `seconds`, or less if the client leaves or the server shuts down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not closing.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0 or await request.is_disconnected():
            return
        await asyncio.sleep(min(_PAUSE_STEP_SECONDS, remaining))


class _DroppedResponse(Response):
    """Sends the start of a response, then leaves it unfinished.

    The headers promise the full body but only half of it is sent; returning with
    the response incomplete makes uvicorn close the connection, so the client
    sees a broken response after the request was fully processed.
    """

    def __init__(self, inner: Response) -> None:
        super().__init__(status_code=inner.status_code)
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, body = self.inner.status_code, bytes(self.inner.body)
        if not body:
            # A 204 cannot carry a body to cut short, so announce one instead.
            status, body = 200, b'{"status": "ok"}'
        headers = [
            (name, value)
            for name, value in self.inner.raw_headers
            if name != b"content-length"
        ]
        headers.append((b"content-length", str(len(body)).encode()))
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        partial = body[: len(body) // 2]
        await send({"type": "http.response.body", "body": partial, "more_body": True})


def _fault_error(fault: Fault) -> Response:
    body = fault.error_body()
    if isinstance(body, dict):
        return JSONResponse(body, status_code=fault.status, headers=fault.headers)
    media_type = "text/html" if body.lstrip().startswith("<") else "text/plain"
    return Response(
        body, status_code=fault.status, headers=fault.headers, media_type=media_type
    )


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _create_call(sandbox: Sandbox, request: Request, body: Any) -> Response:
    return JSONResponse(sandbox.create_call(body), status_code=201)


def _get_call(sandbox: Sandbox, request: Request, body: Any) -> Response:
    return JSONResponse(sandbox.read_call(request.path_params["call_id"]))


def _list_calls(sandbox: Sandbox, request: Request, body: Any) -> Response:
    return JSONResponse(sandbox.list_calls(body))


def _stop_call(sandbox: Sandbox, request: Request, body: Any) -> Response:
    sandbox.stop_call(request.path_params["call_id"])
    return Response(status_code=204)


def _get_number(sandbox: Sandbox, request: Request, body: Any) -> Response:
    number = request.path_params["phone_number"]
    return JSONResponse(sandbox.get_phone_number(number))


def _update_number(sandbox: Sandbox, request: Request, body: Any) -> Response:
    number = request.path_params["phone_number"]
    return JSONResponse(sandbox.update_phone_number(number, body))


def _list_numbers(sandbox: Sandbox, request: Request, body: Any) -> Response:
    return JSONResponse(sandbox.list_phone_numbers(request.query_params))


def _get_agent(sandbox: Sandbox, request: Request, body: Any) -> Response:
    version = request.query_params.get("version")
    return JSONResponse(sandbox.get_agent(request.path_params["agent_id"], version))


def _list_agents(sandbox: Sandbox, request: Request, body: Any) -> Response:
    return JSONResponse(sandbox.list_agents(request.query_params, body))


def _get_llm(sandbox: Sandbox, request: Request, body: Any) -> Response:
    version = request.query_params.get("version")
    return JSONResponse(sandbox.get_llm(request.path_params["llm_id"], version))


def _concurrency(sandbox: Sandbox, request: Request, body: Any) -> Response:
    return JSONResponse(sandbox.concurrency())


_ENDPOINTS = (
    _Endpoint("POST", "/v2/create-phone-call", "create-phone-call", _create_call),
    _Endpoint("GET", "/v2/get-call/{call_id}", "get-call", _get_call),
    _Endpoint("POST", "/v3/list-calls", "list-calls", _list_calls),
    _Endpoint("POST", "/v2/stop-call/{call_id}", "stop-call", _stop_call),
    _Endpoint(
        "GET", "/get-phone-number/{phone_number}", "get-phone-number", _get_number
    ),
    _Endpoint(
        "PATCH",
        "/update-phone-number/{phone_number}",
        "update-phone-number",
        _update_number,
    ),
    _Endpoint("GET", "/v2/list-phone-numbers", "list-phone-numbers", _list_numbers),
    _Endpoint("GET", "/get-agent/{agent_id}", "get-agent", _get_agent),
    _Endpoint("POST", "/v2/list-agents", "list-agents", _list_agents),
    _Endpoint("GET", "/get-retell-llm/{llm_id}", "get-retell-llm", _get_llm),
    _Endpoint("GET", "/get-concurrency", "get-concurrency", _concurrency),
)


# -- control routes -------------------------------------------------------------


def _control_routes(sandbox: Sandbox) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        return JSONResponse(sandbox.stats())

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"status": "ok"})

    async def list_faults(request: Request) -> Response:
        return JSONResponse(sandbox.faults())

    async def add_faults(request: Request) -> Response:
        for fault in _parsed_faults(await request.body()):
            sandbox.add_fault(fault)
        return JSONResponse(sandbox.faults())

    async def set_webhook_url(request: Request) -> Response:
        body = _json_object(await request.body())
        try:
            sandbox.set_webhook_url(body.get("url"), agent_id=body.get("agent_id"))
        except KeyError:
            return _control_error(404, "Not an agent of the sandbox.")
        except (TypeError, ValueError) as exc:
            return _control_error(400, f'Send {{"url": <http(s) URL or null>}}; {exc}.')
        return JSONResponse({"status": "ok"})

    async def clear_faults(request: Request) -> Response:
        sandbox.clear_faults()
        return JSONResponse({"status": "ok"})

    async def set_outcomes(request: Request) -> Response:
        for number, outcome in _validated(_OUTCOMES, await request.body()).items():
            sandbox.set_outcome(number, outcome)
        return JSONResponse({"status": "ok"})

    return [
        Route("/sandbox/health", health, methods=["GET"]),
        Route("/sandbox/stats", stats, methods=["GET"]),
        Route("/sandbox/reset", reset, methods=["POST"]),
        Route("/sandbox/faults", list_faults, methods=["GET"]),
        Route("/sandbox/faults", add_faults, methods=["POST"]),
        Route("/sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/sandbox/outcomes", set_outcomes, methods=["POST"]),
        Route("/sandbox/webhook-url", set_webhook_url, methods=["POST"]),
        *_number_and_artefact_routes(sandbox),
    ]


def _number_and_artefact_routes(sandbox: Sandbox) -> list[Route]:
    async def set_cps(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ApiError as exc:
            return _error(exc)
        cps = body.get("cps") if isinstance(body, dict) else None
        try:
            sandbox.set_cps(request.path_params["phone_number"], cps)
        except KeyError:
            return _control_error(404, "Not a phone number of the sandbox account.")
        except ValueError as exc:
            return _control_error(400, f'Send {{"cps": <integer >= 1>}}; {exc}.')
        return JSONResponse({"status": "ok"})

    async def recording(request: Request) -> Response:
        if not sandbox.has_recording(request.path_params["call_id"]):
            return _control_error(404, "No recording for this call.")
        return Response(_silent_wav(), media_type="audio/wav")

    async def call_log(request: Request) -> Response:
        text = sandbox.call_log(request.path_params["call_id"])
        if text is None:
            return _control_error(404, "No log for this call.")
        return Response(text, media_type="text/plain")

    return [
        Route("/sandbox/phone-numbers/{phone_number}/cps", set_cps, methods=["POST"]),
        Route("/sandbox/recordings/{call_id}.wav", recording, methods=["GET"]),
        Route("/sandbox/logs/{call_id}.txt", call_log, methods=["GET"]),
    ]


def _validated(adapter: TypeAdapter[Any], raw: bytes) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise HTTPException(400, detail=_first_problem(exc)) from exc


def _parsed_faults(raw: bytes) -> list[Fault | WebhookFault]:
    """Read one fault or a list; items with an "event" key are webhook faults."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise HTTPException(400, detail="The body is not valid JSON.") from exc
    items = body if isinstance(body, list) else [body]
    faults = []
    for index, item in enumerate(items):
        try:
            faults.append(parse_fault(item))
        except ValidationError as exc:
            where = f"{index}." if isinstance(body, list) else ""
            raise HTTPException(400, detail=where + _first_problem(exc)) from exc
    return faults


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise HTTPException(400, detail="The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, detail="The body must be a JSON object.")
    return body


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def _control_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


@lru_cache(maxsize=1)
def _silent_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


# -- errors outside the routes --------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No sandbox route for {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return JSONResponse(
        {"status": "error", "message": message},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error(
        "Sandbox failed on %s %s", request.method, request.url.path, exc_info=exc
    )
    return JSONResponse(
        {"status": "error", "message": "Internal error in the sandbox; see its log."},
        status_code=500,
    )
