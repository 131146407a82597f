"""The web shell: health, metrics, the OpenAPI description, languages, devices."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from core.context import AppContext
from core.models import DeviceKind


async def test_healthz_reports_storage_and_services(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["bus"] == "in-process"
    assert {"voip", "conference", "vod", "sms", "kiosk"} <= set(body["services"])


async def test_metrics_count_requests(client: TestClient) -> None:
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    assert 'unicomm_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "unicomm_http_request_seconds_bucket" in text


async def test_openapi_is_valid_and_describes_every_api_route(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    validate(spec)
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert {("POST", "/api/auth/login"), ("GET", "/api/voip/extensions")} <= documented
    mounted = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
        and route.resource.canonical != "/api/openapi.json"
    }
    assert mounted - documented == set(), "every /api/ route is declared through ApiRegistry"


async def test_language_follows_cookie_then_accept_language(client: TestClient) -> None:
    page = await client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert 'lang="en"' in await page.text() and "Sign in" in await page.text()
    page = await client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert "登录" in await page.text()
    switched = await client.get("/lang?to=en&next=/login", allow_redirects=False)
    assert switched.status == 302 and switched.headers["Location"] == "/login"
    page = await client.get("/login", headers={"Accept-Language": "zh-CN"})
    assert "Sign in" in await page.text()
    bad = await client.get("/lang?to=fr")
    assert bad.status == 400
    offsite = await client.get("/lang?to=en&next=//evil.example/", allow_redirects=False)
    assert offsite.headers["Location"] == "/"


async def test_device_tokens_identify_machines_not_staff(
    client: TestClient, app_context: AppContext
) -> None:
    async with app_context.db.session() as session:
        token = await app_context.auth.issue_device_token(session, DeviceKind.KIOSK, "kiosk-01")
    identity = await app_context.auth.identify_token(token)
    assert (
        identity is not None and identity.device_kind is DeviceKind.KIOSK and identity.role is None
    )
    staff_only = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert staff_only.status == 401


async def test_unknown_api_path_and_console_page_need_login(client: TestClient) -> None:
    assert (await client.get("/api/nope")).status == 404
    page = await client.get("/console/voip", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/login")
