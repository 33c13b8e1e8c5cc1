"""Authentication, error bodies, unknown ids and path encoding."""

from __future__ import annotations

import httpx

from prefect_retell.sandbox import DEFAULT_SANDBOX_API_KEY, SandboxServer

from .support import TWILIO

NOT_FOUND = "Cannot find requested asset under given api key."


async def test_missing_key_is_401_with_retell_error_body(server: SandboxServer):
    """A request without Authorization gets 401 and Retell's error body."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/get-concurrency")

    assert response.status_code == 401
    assert response.json()["status"] == "error"


async def test_wrong_key_is_401_and_not_echoed(server: SandboxServer):
    """A wrong key is refused and neither it nor the real key is repeated."""
    headers = {"Authorization": "Bearer key_wrong_SECRET123"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        response = await http.get(f"/get-phone-number/{TWILIO}")

    assert response.status_code == 401
    assert "SECRET123" not in response.text
    assert DEFAULT_SANDBOX_API_KEY not in response.text


async def test_key_without_bearer_scheme_is_401(server: SandboxServer):
    """The key alone, without "Bearer", is not accepted."""
    headers = {"Authorization": DEFAULT_SANDBOX_API_KEY}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        response = await http.get("/get-concurrency")

    assert response.status_code == 401


async def test_unknown_call_is_422_asset_message(client: httpx.AsyncClient):
    """An unknown call id gives 422 "Cannot find requested asset", as Retell does."""
    response = await client.get("/v2/get-call/call_fx_missing")

    assert response.status_code == 422
    assert response.json() == {"status": "error", "message": NOT_FOUND}


async def test_unknown_agent_number_and_llm_are_422(client: httpx.AsyncClient):
    """Unknown agent, phone number and LLM ids all answer 422."""
    for path in (
        "/get-agent/agent_nope",
        "/get-phone-number/+19995550100",
        "/get-retell-llm/llm_nope",
        "/v2/stop-call/call_nope",
    ):
        method = "POST" if "stop-call" in path else "GET"
        response = await client.request(method, path)
        assert response.status_code == 422, path
        assert response.json()["message"] == NOT_FOUND


async def test_unknown_route_is_404_json(client: httpx.AsyncClient):
    """A path Retell does not have answers 404 with a JSON error body."""
    response = await client.get("/v2/no-such-endpoint")

    assert response.status_code == 404
    assert response.json() == {
        "status": "error",
        "message": "No sandbox route for GET /v2/no-such-endpoint.",
    }


async def test_wrong_method_is_405_json(client: httpx.AsyncClient):
    """A known path with the wrong method answers 405 with a JSON error body."""
    response = await client.get("/v2/create-phone-call")

    assert response.status_code == 405
    assert response.json()["status"] == "error"


async def test_phone_number_path_accepts_literal_and_encoded_plus(
    client: httpx.AsyncClient,
):
    """`+` may appear literally in the path (as the SDK sends it) or as %2B."""
    literal = await client.get("/get-phone-number/+16505550100")
    encoded = await client.get("/get-phone-number/%2B16505550100")

    assert literal.status_code == encoded.status_code == 200
    assert literal.json()["phone_number"] == encoded.json()["phone_number"] == TWILIO


async def test_invalid_json_body_is_400(client: httpx.AsyncClient):
    """A body that is not JSON answers 400."""
    response = await client.post(
        "/v2/create-phone-call",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["message"] == "The request body is not valid JSON."
