"""The dashboard in a real browser against the real server with live feeds: sign-in, the
camera grid filling with live thumbnails, event filters, an event's snapshot, charts, the
refusal of admin actions for a viewer, hostile names rendered as text, and the CSP."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from ..conftest import wait_for
from .conftest import VIEWPORT, PageLog, Served

pytestmark = [pytest.mark.system, pytest.mark.slow]

FEED_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 20_000
HOSTILE_NAMES = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror=window.__xss=1>',
]


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Any, token: str) -> None:
    page.goto("/")
    expect(page.locator("#login-view")).to_be_visible()
    page.fill("#login-token", token)
    page.press("#login-token", "Enter")
    expect(page.locator("#app-view")).to_be_visible()


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))


def jpeg_size(client: httpx.Client, url: str) -> tuple[int, int]:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("image/jpeg")
    image = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{url} is not a decodable JPEG"
    return int(image.shape[1]), int(image.shape[0])


def api_cameras(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/cameras")
    answer.raise_for_status()
    return {camera["id"]: camera for camera in answer.json()["items"]}


def events_page(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/events", params={"limit": 200, **params})
    answer.raise_for_status()
    return list(answer.json()["items"])


def rows(page: Any) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            "#events-body tr.event-row",
            "rows => rows.map(r => ({id: r.dataset.eventId, kind: r.dataset.kind,"
            " camera: r.dataset.cameraId}))",
        )
    )


# -- the page itself ----------------------------------------------------------------------


def test_the_page_has_a_strict_csp_that_blocks_inline_script(page: Any, page_log: PageLog) -> None:
    response = page.goto("/")
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    # The control: an injected inline script must be blocked, and the watch must see it.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__inline = 1'; document.head.append(s); }"
    )
    assert page.evaluate("window.__inline") is None
    wait_for(lambda: page_log.csp_violations, 5, what="the CSP violation to be reported")
    page_log.console.clear()  # expected here; every other test must have none


def test_a_wrong_token_is_refused_and_sign_out_ends_the_session(
    page: Any, served: Served, screenshots: Path
) -> None:
    page.goto("/")
    page.fill("#login-token", "not-a-valid-token-" + "x" * 20)
    page.press("#login-token", "Enter")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    expect(page.locator("#app-view")).to_be_hidden()
    shot(page, screenshots, "login-refused")

    sign_in(page, served.admin_token)
    expect(page.locator("#whoami")).to_contain_text("admin")
    page.reload()  # the HttpOnly session cookie survives a reload
    expect(page.locator("#app-view")).to_be_visible()
    assert page.evaluate("document.cookie") == ""  # the page cannot read the session
    page.click("#logout-button")
    expect(page.locator("#login-view")).to_be_visible()
    page.reload()
    expect(page.locator("#login-view")).to_be_visible()


def test_an_ended_session_returns_to_sign_in(page: Any, served: Served) -> None:
    sign_in(page, served.admin_token)
    page.context.clear_cookies()  # as when the session expires on the server
    page.keyboard.press("r")  # the next request is answered 401
    expect(page.locator("#login-view")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#login-error")).to_contain_text("session ended")


# -- the camera grid -------------------------------------------------------------------------


def test_the_grid_fills_with_live_thumbnails_and_overlays(
    page: Any, served: Served, admin_api: httpx.Client, screenshots: Path
) -> None:
    sign_in(page, served.admin_token)
    cameras = api_cameras(admin_api)
    expect(page.locator("#grid .card")).to_have_count(len(cameras), timeout=UI_TIMEOUT_MS)
    for camera_id in served.feed_cameras:
        card = page.locator(f'#grid .card[data-camera-id="{camera_id}"]')
        thumb = card.locator("img.thumb")
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0",
            arg=thumb.element_handle(),
            timeout=FEED_TIMEOUT_S * 1000,
        )
        # The image is the camera's real anonymized thumbnail: same size as the API's JPEG.
        shown = thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert tuple(shown) == jpeg_size(admin_api, thumb.get_attribute("src"))
        expect(card.locator(".badge.state")).to_have_text("online", timeout=UI_TIMEOUT_MS)
        expect(card.locator(".cam-name")).to_have_text(cameras[camera_id]["name"])
        zones, lines = len(cameras[camera_id]["zones"]), len(cameras[camera_id]["lines"])
        assert zones + lines > 0, "the feed cameras have zones or lines to draw"
        expect(card.locator("svg.overlay polygon")).to_have_count(zones)
        expect(card.locator("svg.overlay line.cross-line")).to_have_count(lines)
        expect(card.locator("svg.overlay path.cross-arrow")).to_have_count(lines)
    # Live: the thumbnail is fetched again (a new cache-busting address) within seconds.
    first = page.locator(f'#grid .card[data-camera-id="{served.feed_cameras[0]}"] img.thumb')
    before = first.get_attribute("src")
    page.wait_for_function(
        "([img, before]) => img.getAttribute('src') !== before && img.naturalWidth > 0",
        arg=[first.element_handle(), before],
        timeout=UI_TIMEOUT_MS,
    )
    expect(page.locator("#grid-summary")).to_contain_text(f"{len(cameras)} camera")
    shot(page, screenshots, "grid")
    page.set_viewport_size({"width": 1920, "height": 1080})
    shot(page, screenshots, "grid-1920")
    page.set_viewport_size(VIEWPORT)

    # Keyboard: 2 opens the events, ? the help, Esc closes it, o hides the overlays.
    page.keyboard.press("2")
    expect(page.locator("#view-events")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#help-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help-dialog")).to_be_hidden()
    page.keyboard.press("1")
    expect(page.locator("#view-cameras")).to_be_visible()
    page.keyboard.press("o")
    expect(page.locator("#grid svg.overlay").first).to_be_hidden()


def test_a_camera_opens_large_with_its_latest_events(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    camera_id = served.feed_cameras[0]
    newest = wait_for(
        lambda: events_page(admin_api, camera=camera_id, limit=1),
        FEED_TIMEOUT_S,
        interval=1.0,
        what=f"an event on {camera_id}",
    )[0]
    camera = api_cameras(admin_api)[camera_id]
    sign_in(page, served.admin_token)
    card = page.locator(f'#grid .card[data-camera-id="{camera_id}"]')
    card.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#camera-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#camera-dialog-title")).to_have_text(camera["name"])
    image = dialog.locator("#camera-image")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=image.element_handle(),
        timeout=UI_TIMEOUT_MS,
    )
    expect(dialog.locator("#camera-overlay polygon")).to_have_count(len(camera["zones"]))
    recent = dialog.locator(f'#camera-events button[data-event-id="{newest["event_id"]}"]')
    expect(recent).to_be_visible(timeout=UI_TIMEOUT_MS)
    # When each label was in view: the presence tags of the camera, one bar per segment.
    since = time.time() - 3600
    tags = admin_api.get(
        "/api/v1/tags",
        params={"label": "person", "camera": camera_id, "since": since, "limit": 1000},
    ).json()["items"]
    assert tags, "people are in view on the vtest footage"
    bars = dialog.locator('#camera-presence rect.segment[data-label="person"]')
    expect(bars.first).to_be_attached(timeout=UI_TIMEOUT_MS)
    assert bars.count() >= len(tags)  # the page asks a moment later: a new one may have begun
    shot(page, screenshots, "camera")
    recent.click()
    expect(page.locator("#event-dialog")).to_be_visible()
    expect(page.locator("#event-fields")).to_contain_text(newest["event_id"])
    page.keyboard.press("Escape")
    expect(page.locator("#event-dialog")).to_be_hidden()
    expect(dialog).to_be_visible()  # back to the camera
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def level_of(badge: Any) -> tuple[str, str, str]:
    """A level badge's text, classes and tooltip, read at one moment (the level can change
    at the next refresh)."""
    text, classes, title = badge.evaluate(
        "b => [b.textContent, b.className, b.getAttribute('title') || '']"
    )
    return text, classes, title


def test_a_running_camera_shows_its_analysis_level(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    from feedtag.config.adaptive import AdaptiveRateConfig

    cameras = api_cameras(admin_api)
    sign_in(page, served.admin_token)
    # The live feeds: each card shows the level the engine is at and that level's rate, one
    # of the camera's three (docs/ingest.md: floor 0.5, normal analysis_fps, tracking 5).
    for camera_id in served.feed_cameras:
        rates = dict(zip(("floor", "normal", "tracking"),
                         AdaptiveRateConfig().rates(cameras[camera_id]["analysis_fps"]), strict=True))  # fmt: skip
        badge = page.locator(f'#grid .card[data-camera-id="{camera_id}"] .badge.level')
        expect(badge).to_be_visible(timeout=FEED_TIMEOUT_S * 1000)
        text, classes, title = level_of(badge)
        level, _, rate = text.partition(" · ")
        assert level in rates and rate == f"{rates[level]:g} fps", text
        assert f"level-{level}" in classes.split() and title.startswith(f"Analysis level {level}")
    shot(page, screenshots, "grid-levels")
    # and what it costs, as a rate between two refreshes of the camera's totals (the live feed:
    # a small 1 fps camera costs a few milliseconds per second, never a whole core)
    for camera_id in served.feed_cameras:
        cost = page.locator(f'#grid .card[data-camera-id="{camera_id}"] dt:text-is("cost") + dd')
        expect(cost).to_have_text(re.compile(r"^\d+\.\d ms/s$"), timeout=UI_TIMEOUT_MS)
        assert 0.0 < float(cost.text_content().split()[0]) < 1000.0

    # Each level as the server reports it, and nothing where the camera does not run or the
    # server does not report one (the camera list and one camera, both patched on the way).
    patches: dict[str, dict[str, Any]] = {}

    def patched(route: Any) -> None:
        answer = route.fetch()
        data = answer.json()
        for item in data.get("items", [data]):
            patch = patches.get(item["id"], {})
            item["enabled"] = patch.get("enabled", item["enabled"])
            if item["status"] is not None:
                item["status"].update(patch.get("status", {}))
                for name in patch.get("absent", ()):
                    item["status"].pop(name, None)
        route.fulfill(response=answer, json=data)

    page.route(re.compile(r".*/api/v1/cameras(/[^/?]+)?(\?.*)?$"), patched)
    first, second = served.feed_cameras
    online = {"state": "online"}
    stages: list[tuple[dict[str, dict[str, Any]], dict[str, str | None]]] = [
        ({first: {"status": {**online, "analysis_level": "tracking", "target_fps": 5.0}},
          second: {"status": {**online, "analysis_level": "floor", "target_fps": 0.5}}},
         {first: "tracking · 5 fps", second: "floor · 0.5 fps"}),
        ({first: {"status": {**online, "analysis_level": "normal", "target_fps": 2.0}},
          second: {"status": online, "absent": ("analysis_level", "target_fps")}},  # older server
         {first: "normal · 2 fps", second: None}),
        ({first: {"status": {"state": "offline", "analysis_level": "normal", "target_fps": 2.0}},
          second: {"enabled": False, "status": {**online, "analysis_level": "normal"}}},
         {first: None, second: None}),
        ({first: {"status": {**online, "analysis_level": HOSTILE_NAMES[1], "target_fps": 2.0}}},
         {first: None}),
    ]  # fmt: skip
    # at the floor, the tooltip says whether the packet gate believes the camera's encoder
    gate_stages = [
        ("not_believed", "constant bitrate"),
        ("believed", "left undecoded"),
        ("distrusted", "for ten minutes"),
        (HOSTILE_NAMES[1], None),
    ]
    for patch, shown in stages:
        patches.clear()
        patches.update(patch)
        for camera_id, text in shown.items():
            badge = page.locator(f'#grid .card[data-camera-id="{camera_id}"] .badge.level')
            if text is None:
                expect(badge).to_be_hidden(timeout=UI_TIMEOUT_MS)
                continue
            expect(badge).to_have_text(text, timeout=UI_TIMEOUT_MS)
            level = text.partition(" ")[0]
            expect(badge).to_have_class(re.compile(rf"\blevel-{level}\b"))
            expect(badge).to_have_attribute("title", re.compile(rf"^Analysis level {level}, "))
    badge = page.locator(f'#grid .card[data-camera-id="{first}"] .badge.level')
    for gate, says in gate_stages:
        patches.clear()
        patches[first] = {"status": {**online, "analysis_level": "floor", "target_fps": 0.5,
                                     "packet_gate": gate}}  # fmt: skip
        if says is None:  # a state this page does not know adds nothing
            expect(badge).to_have_attribute(
                "title", re.compile(r"floor rate \(adaptive\.floor_fps\)\.$"), timeout=UI_TIMEOUT_MS
            )
        else:
            expect(badge).to_have_attribute(
                "title", re.compile(f"Packet gate: .*{says}"), timeout=UI_TIMEOUT_MS
            )
    assert page.evaluate("typeof window.__xss") == "undefined"

    # The camera large shows it beside its name, and drops it when the camera goes offline.
    patches.clear()
    patches[first] = {"status": {**online, "analysis_level": "tracking", "target_fps": 5.0}}
    card = page.locator(f'#grid .card[data-camera-id="{first}"]')
    expect(card.locator(".badge.level")).to_have_text("tracking · 5 fps", timeout=UI_TIMEOUT_MS)
    card.focus()
    page.keyboard.press("Enter")
    dialog_badge = page.locator("#camera-dialog #camera-level")
    expect(dialog_badge).to_have_text("tracking · 5 fps")
    # what the camera costs, with its four parts, once two refreshes are 2 s apart
    number = r"\d+\.\d"
    parts = ", ".join(f"{part} {number}" for part in ("ingest", "detector", "analysis", "media"))
    expect(page.locator('#camera-fields dt:text-is("Cost") + dd')).to_have_text(
        re.compile(rf"^{number} ms/s \({parts}\)$"), timeout=UI_TIMEOUT_MS
    )
    expect(dialog_badge).to_have_attribute("title", re.compile("tracking rate"))
    shot(page, screenshots, "camera-level")
    patches[first] = {"status": {**online, "analysis_level": "floor", "target_fps": 0.5}}
    expect(dialog_badge).to_have_text("floor · 0.5 fps", timeout=UI_TIMEOUT_MS)  # its own refresh
    patches[first] = {"status": {"state": "stalled"}}
    expect(dialog_badge).to_be_hidden(timeout=UI_TIMEOUT_MS)
    page.keyboard.press("Escape")
    expect(page.locator("#camera-dialog")).to_be_hidden()


def test_cards_can_be_ordered_costliest_first(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    sign_in(page, served.admin_token)
    first, second = served.feed_cameras
    # The two live cameras' ingest CPU, as the server would count it, growing at rates this
    # test sets (ms per second), far above what the live feeds really cost.
    rates = {first: 400.0, second: 40.0}
    totals = dict.fromkeys(rates, 0.0)
    last = [time.monotonic()]

    def costed(route: Any) -> None:
        answer = route.fetch()
        data = answer.json()
        now = time.monotonic()
        for camera_id, rate in rates.items():
            totals[camera_id] += (now - last[0]) * rate / 1000
        last[0] = now
        for item in data.get("items", [data]):
            if item["id"] in rates and item["status"] is not None:
                item["status"]["ingest_cpu_s"] = totals[item["id"]]
        route.fulfill(response=answer, json=data)

    page.route(re.compile(r".*/api/v1/cameras(/[^/?]+)?(\?.*)?$"), costed)
    ids = 'Array.from(document.querySelectorAll("#grid .card")).map(c => c.dataset.cameraId)'
    page.select_option("#grid-order", "cost")
    for expensive, cheap in ((first, second), (second, first)):
        rates[expensive], rates[cheap] = 400.0, 40.0
        # the grid may have no card yet when the first look is taken
        wait_for(lambda e=expensive: page.evaluate(ids)[:1] == [e], UI_TIMEOUT_MS / 1000,
                 what=f"{expensive} first")  # fmt: skip
        order = page.evaluate(ids)
        assert order.index(expensive) < order.index(cheap), order
    shot(page, screenshots, "grid-costliest-first")
    # as listed again: the server's order
    page.select_option("#grid-order", "list")
    first_page = admin_api.get("/api/v1/cameras", params={"limit": 48}).json()["items"]
    listed = [camera["id"] for camera in first_page]
    wait_for(lambda: page.evaluate(ids) == listed, UI_TIMEOUT_MS / 1000, what="list order")
    page.unroute(re.compile(r".*/api/v1/cameras(/[^/?]+)?(\?.*)?$"))


def fake_camera(camera_id: str) -> dict[str, Any]:
    """A camera as the list answers for one that is switched off."""
    return {"id": camera_id, "name": camera_id.replace("-", " ").title(), "enabled": False,
            "analysis_fps": 1.0, "url": "rtsp://cam.example/s", "status": None, "vision": None,
            "zones": [], "lines": [], "event_counts": {}, "defined_in": "config",
            "thumbnail_url": f"/api/v1/cameras/{camera_id}/thumbnail.jpg", "shard": None,
            "node": None}  # fmt: skip


def test_the_grid_shows_many_cameras_a_page_at_a_time(
    page: Any, served: Served, screenshots: Path
) -> None:
    """Against a list of 60 cameras (the server's answers replaced by one that pages like
    it): one page of cards at a time, Next and Previous follow the cursors, the summary counts
    every camera, and the filter asks the server for the matching cameras."""
    from urllib.parse import parse_qs, urlsplit

    fleet = [fake_camera(f"pole-{number:03d}") for number in range(60)]
    asked: list[dict[str, list[str]]] = []

    def paged(route: Any) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        asked.append(query)
        needle = query.get("q", [""])[0].casefold()
        matched = [
            c for c in fleet if needle in c["id"].casefold() or needle in c["name"].casefold()
        ]
        after = query.get("cursor", [""])[0]
        rest = [c for c in matched if c["id"] > after]
        limit = int(query.get("limit", ["100000"])[0])
        shown = rest[:limit]
        states = dict.fromkeys(["online", "connecting", "stalled", "offline", "stopped"], 0)
        route.fulfill(json={"items": shown, "total": len(matched),
                            "next_cursor": shown[-1]["id"] if len(rest) > limit else None,
                            "states": {**states, "disabled": len(matched)}})  # fmt: skip

    page.route(re.compile(r".*/api/v1/cameras(\?.*)?$"), paged)
    sign_in(page, served.admin_token)
    cards = page.locator("#grid .card")
    expect(cards).to_have_count(48, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#grid-summary")).to_contain_text("60 cameras · 60 disabled")
    expect(page.locator("#grid-range")).to_have_text("1\N{EN DASH}48 of 60")
    expect(page.locator("#grid-prev")).to_be_disabled()
    assert all(q.get("limit") == ["48"] for q in asked if "cursor" in q or "q" in q)
    page.click("#grid-next")
    expect(page.locator("#grid-range")).to_have_text("49\N{EN DASH}60 of 60", timeout=UI_TIMEOUT_MS)
    expect(cards).to_have_count(12)
    expect(cards.first).to_have_attribute("data-camera-id", "pole-048")
    expect(page.locator("#grid-next")).to_be_disabled()
    assert asked[-1]["cursor"] == ["pole-047"]
    shot(page, screenshots, "grid-second-page")
    page.click("#grid-prev")
    expect(page.locator("#grid-range")).to_have_text("1\N{EN DASH}48 of 60", timeout=UI_TIMEOUT_MS)
    expect(cards.first).to_have_attribute("data-camera-id", "pole-000")
    # the filter is the server's: a camera on another page is found
    page.fill("#grid-filter", "pole 05")
    expect(cards).to_have_count(10, timeout=UI_TIMEOUT_MS)
    expect(cards.first).to_have_attribute("data-camera-id", "pole-050")
    expect(page.locator("#grid-pager")).to_be_hidden()
    expect(page.locator("#grid-summary")).to_contain_text("10 cameras")
    assert asked[-1]["q"] == ["pole 05"]
    # the Admin view's camera table pages the same way, with a filter of its own
    asked.clear()
    page.evaluate("location.hash = '#/admin'")  # the grid's filter has the keyboard
    rows = page.locator("#admin-cameras tr")
    expect(rows).to_have_count(48, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#admin-camera-range")).to_have_text("1\N{EN DASH}48 of 60")
    page.click("#admin-camera-next")
    expect(rows).to_have_count(12, timeout=UI_TIMEOUT_MS)
    expect(rows.first.locator("td").first).to_have_text("pole-048")
    expect(page.get_by_role("button", name="Remove camera pole-059")).to_be_visible()
    page.click("#admin-camera-prev")
    expect(rows.first.locator("td").first).to_have_text("pole-000", timeout=UI_TIMEOUT_MS)
    page.fill("#admin-camera-filter", "pole 05")
    expect(rows).to_have_count(10, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#admin-camera-pager")).to_be_hidden()
    assert asked and all(q.get("limit") == ["48"] for q in asked), asked  # never every camera
    shot(page, screenshots, "admin-cameras-filtered")
    page.unroute(re.compile(r".*/api/v1/cameras(\?.*)?$"))


# -- events -------------------------------------------------------------------------------------


def wait_for_events(client: httpx.Client, predicate: Any, what: str) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        items = events_page(client)
        return items if predicate(items) else None

    return list(wait_for(ready, FEED_TIMEOUT_S, interval=1.0, what=what))


def test_events_filter_by_kind_and_camera(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    items = wait_for_events(
        admin_api,
        lambda items: (
            len({e["kind"] for e in items}) >= 2 or len({e["camera_id"] for e in items}) >= 2
        ),
        "events of two kinds or two cameras from the live feeds",
    )
    kinds = sorted({e["kind"] for e in items})
    sign_in(page, served.admin_token)
    page.goto("/#/events")
    page.locator("#filter-range").select_option("all")
    expect(page.locator("#events-body tr.event-row").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    unfiltered = rows(page)
    assert unfiltered, "the unfiltered list shows events"
    shot(page, screenshots, "events")

    kind = min(kinds, key=lambda k: sum(e["kind"] == k for e in items))  # the rarer one
    newest = events_page(admin_api, kind=kind)[0]["event_id"]
    page.locator("#filter-kind").select_option(kind)
    page.wait_for_function(
        "kind => { const r = [...document.querySelectorAll('#events-body tr.event-row')];"
        " return r.length > 0 && r.every(x => x.dataset.kind === kind); }",
        arg=kind,
        timeout=UI_TIMEOUT_MS,
    )
    filtered = rows(page)
    assert newest in {r["id"] for r in filtered}
    assert {r["kind"] for r in filtered} == {kind}
    expect(page.locator("#events-status")).to_contain_text(f"kind {kind}")
    assert f"kind={kind}" in page.url  # the filter is in the address, to share or reload

    # A time range in the future has no events.
    page.locator("#filter-range").select_option("custom")
    page.fill(
        "#filter-since", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    )
    page.locator("#filter-since").dispatch_event("change")
    expect(page.locator("#events-body tr.event-row")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#events-status")).to_contain_text("No events")

    page.locator("#event-filters button[type=reset]").click()
    camera = items[0]["camera_id"]
    # the camera field suggests the cameras whose id or name holds what is typed
    page.locator("#filter-camera").fill(camera[:-1])
    suggested = page.locator("#filter-camera-options option")
    expect(suggested.first).to_be_attached(timeout=UI_TIMEOUT_MS)
    values = suggested.evaluate_all("o => o.map(x => [x.value, x.label])")
    assert camera in [value for value, _ in values]
    assert all(camera[:-1].lower() in (value + label).lower() for value, label in values), values
    page.locator("#filter-camera").fill(camera)
    page.wait_for_function(
        "camera => { const r = [...document.querySelectorAll('#events-body tr.event-row')];"
        " return r.length > 0 && r.every(x => x.dataset.cameraId === camera); }",
        arg=camera,
        timeout=UI_TIMEOUT_MS,
    )
    expected = {e["event_id"] for e in events_page(admin_api, camera=camera, limit=50)}
    shown = {r["id"] for r in rows(page)}
    assert shown & expected, "the camera filter shows that camera's events"
    shot(page, screenshots, "events-filtered")


def test_an_event_opens_with_its_snapshot(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    items = wait_for_events(
        admin_api, lambda items: any(e["snapshot_url"] for e in items), "an event with a snapshot"
    )
    event = next(e for e in items if e["snapshot_url"])
    sign_in(page, served.admin_token)
    page.goto(f"/#/events?camera={event['camera_id']}&kind={event['kind']}&range=all")
    row = page.locator(f'#events-body tr.event-row[data-event-id="{event["event_id"]}"]')
    expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    row.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#event-dialog")
    expect(dialog).to_be_visible()
    snapshot = dialog.locator("#event-snapshot")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=snapshot.element_handle(),
        timeout=UI_TIMEOUT_MS,
    )
    assert tuple(snapshot.evaluate("i => [i.naturalWidth, i.naturalHeight]")) == jpeg_size(
        admin_api, event["snapshot_url"]
    )
    expect(dialog.locator("#event-fields")).to_contain_text(event["event_id"])
    expect(dialog.locator("#event-dialog-title")).to_contain_text(event["kind"].replace("_", " "))
    shot(page, screenshots, "event-detail")

    # An event has an address of its own, shown in the dialog; closing forgets it.
    dialog.get_by_role("link", name="link to this event").click()
    expect(page).to_have_url(re.compile(f"event={event['event_id']}"))
    expect(dialog.locator("#event-fields")).to_contain_text(event["event_id"])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).not_to_have_url(re.compile("event="))
    # An unknown event is answered plainly.
    page.evaluate("id => { location.hash = `#/events?event=${id}`; }", "0" * 32)
    expect(dialog.locator("#event-dialog-error")).to_contain_text("Not found (404)")


def test_new_events_arrive_live(page: Any, served: Served) -> None:
    sign_in(page, served.admin_token)
    page.goto("/#/events")
    expect(page.locator("#live-indicator.up")).to_be_attached(timeout=UI_TIMEOUT_MS)
    # A row marked fresh came through the event stream, not from a page load.
    expect(page.locator("#events-body tr.event-row.fresh").first).to_be_attached(
        timeout=FEED_TIMEOUT_S * 1000
    )


def test_an_event_that_ends_is_updated_live(page: Any, served: Served) -> None:
    from feedtag.core import Event, EventEnd, EventKind

    pipeline = served.server.engine.events

    def deliver(item: Event | EventEnd) -> None:
        """What the event pipeline does with an event or an end: the store writer stores it
        and tells its listeners (the live stream)."""
        pipeline.writer.put(item)
        assert pipeline.writer.flush(10)

    sign_in(page, served.admin_token)
    page.goto("/#/events")
    expect(page.locator("#live-indicator.up")).to_be_attached(timeout=UI_TIMEOUT_MS)
    camera = served.feed_cameras[0]
    dwell = Event("e2e" + "d" * 29, camera, EventKind.DWELL, "dwell-test", time.time() - 40,
                  label="person", zone="path", attributes={"duration_s": 15.0})  # fmt: skip
    deliver(dwell)
    row = page.locator(f'#events-body tr[data-event-id="{dwell.event_id}"]')
    expect(row).to_be_attached(timeout=UI_TIMEOUT_MS)
    expect(row.locator(".details")).not_to_contain_text("lasted")
    row.click()
    dialog = page.locator("#event-dialog")
    expect(dialog).to_contain_text("still going on", timeout=UI_TIMEOUT_MS)
    deliver(EventEnd.of(dwell, dwell.started_at + 25))
    expect(row.locator(".details")).to_contain_text("lasted 25", timeout=UI_TIMEOUT_MS)
    expect(dialog).not_to_contain_text("still going on", timeout=UI_TIMEOUT_MS)
    expect(dialog).to_contain_text("25.0 s")


def test_events_made_while_the_stream_reconnects_all_reach_the_table(
    page: Any, served: Served
) -> None:
    from feedtag.core import Event, EventKind

    writer = served.server.engine.events.writer
    state = served.server.app.state.api
    sign_in(page, served.admin_token)
    page.goto("/#/events")
    expect(page.locator("#live-indicator.up")).to_be_attached(timeout=UI_TIMEOUT_MS)
    camera = served.feed_cameras[0]
    made = [
        Event(f"e2e-resume-{i}-{time.time_ns()}", camera, EventKind.LINE_CROSS, "resume-test",
              time.time() - 30 + i, label="person")
        for i in range(3)
    ]  # fmt: skip
    writer.put(made[0])
    assert writer.flush(10)
    first = page.locator(f'#events-body tr.fresh[data-event-id="{made[0].event_id}"]')
    expect(first).to_be_attached(timeout=UI_TIMEOUT_MS)
    # The server ends every stream; the rest are stored before the browser is back.
    state.closing.set()
    try:
        wait_for(lambda: state.bus.subscribers == 0, 10)
        for item in made[1:]:
            writer.put(item)
        assert writer.flush(10)
    finally:
        state.closing.clear()
    expect(page.locator("#live-indicator.up")).to_be_attached(timeout=UI_TIMEOUT_MS)
    for item in made:
        # marked fresh: they came through the (resumed) stream, not a reload of the list
        row = page.locator(f'#events-body tr.fresh[data-event-id="{item.event_id}"]')
        expect(row).to_have_count(1, timeout=UI_TIMEOUT_MS)


def test_an_event_streamed_while_the_list_loads_stays_marked_live(
    page: Any, served: Served
) -> None:
    """The list request is held until the stream has brought a new event; the list then
    answers with that event in it and replaces the table. The event's row is still marked
    as live (it came through the stream), not shown as an old row of the list."""
    from feedtag.core import Event, EventKind

    writer = served.server.engine.events.writer
    state = served.server.app.state.api
    made = Event(f"e2e-during-load-{time.time_ns()}", served.feed_cameras[0],
                 EventKind.LINE_CROSS, "during-load-test", time.time(), label="person")  # fmt: skip
    held: list[str] = []

    def held_list(route: Any) -> None:
        if not held:
            held.append(route.request.url)
            wait_for(lambda: state.bus.subscribers >= 1, 10, what="the browser's event stream")
            writer.put(made)
            assert writer.flush(10)
            time.sleep(1.0)  # the stream's message reaches the page while the list is held
        route.fulfill(response=route.fetch())

    sign_in(page, served.admin_token)
    expect(page.locator("#live-indicator.up")).to_be_attached(timeout=UI_TIMEOUT_MS)
    page.route(re.compile(r".*/api/v1/events(\?.*)?$"), held_list)
    page.goto("/#/events")
    row = page.locator(f'#events-body tr[data-event-id="{made.event_id}"]')
    expect(row).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#events-table")).not_to_have_attribute("aria-busy", "true")
    assert held, "the list request was not held"
    expect(row).to_have_class(re.compile(r"\bfresh\b"))


# -- charts ----------------------------------------------------------------------------------


def test_a_chart_of_events_per_label_renders(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    wait_for_events(admin_api, bool, "any event")

    def stats() -> dict[str, Any]:
        since = time.time() - 3600
        answer = admin_api.get("/api/v1/stats", params={"since": since, "bucket_s": 60})
        answer.raise_for_status()
        return dict(answer.json())

    before = stats()
    sign_in(page, served.admin_token)
    page.goto("/#/charts")
    series = page.locator("#chart-timeline svg path.series")
    expect(series.first).to_be_attached(timeout=UI_TIMEOUT_MS)
    after = stats()
    labels = {b["label"] or "(no label)" for b in after["buckets"]}
    shown = set(page.locator("#chart-legend .legend-label").all_text_contents())
    assert {b["label"] or "(no label)" for b in before["buckets"]} <= shown <= labels
    assert series.count() == len(shown)
    assert all(
        len(d.split("L")) >= 2
        for d in [series.nth(i).get_attribute("d") for i in range(series.count())]
    )
    totals = [int(t) for t in page.locator("#chart-legend .legend-total").all_text_contents()]
    total = lambda answer: sum(b["count"] for b in answer["buckets"])  # noqa: E731
    assert total(before) <= sum(totals) <= total(after)
    expect(page.locator("#chart-cameras svg rect.bar").first).to_be_attached()
    box = page.locator("#chart-timeline svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    expect(page.locator("#chart-timeline .tooltip")).to_be_visible()
    shot(page, screenshots, "chart")


def test_the_camera_chart_shows_the_cameras_with_the_most_events(
    page: Any, served: Served, screenshots: Path
) -> None:
    """On a site with more cameras than the chart has rows, the server ranks them
    (``by=label&top=25``) and the caption says how many had events."""
    from urllib.parse import parse_qs, urlsplit

    asked: list[dict[str, list[str]]] = []

    def ranked(route: Any) -> None:
        asked.append(parse_qs(urlsplit(route.request.url).query))
        now = time.time()
        rows = [{"camera_id": f"pole-{i:03d}", "label": "person", "count": 100 - i}
                for i in range(25)]  # fmt: skip
        total = sum(row["count"] for row in rows)
        route.fulfill(json={
            "since": now - 3600, "until": now, "bucket_s": 60, "total": total,
            "buckets": [{"camera_id": None, "label": "person", "bucket_start": now - 120,
                         "count": total}],
            "by_kind": {"zone_enter": total}, "cameras": 40, "top_cameras": rows,
            "by_camera": {row["camera_id"]: row["count"] for row in rows},
        })  # fmt: skip

    page.route(re.compile(r".*/api/v1/stats(\?.*)?$"), ranked)
    sign_in(page, served.admin_token)
    page.goto("/#/charts")
    names = page.locator("#chart-cameras svg .bar-name")
    expect(names).to_have_count(25, timeout=UI_TIMEOUT_MS)
    expect(names.first).to_contain_text("pole-000")  # most events first, as ranked
    expect(names.last).to_contain_text("pole-024")
    expect(page.locator("#chart-cameras-caption")).to_have_text(
        "Events per camera and label in the range: the 25 cameras with the most, of 40"
    )
    assert asked[-1]["by"] == ["label"] and asked[-1]["top"] == ["25"]
    shot(page, screenshots, "chart-top-cameras")
    page.unroute(re.compile(r".*/api/v1/stats(\?.*)?$"))


# -- roles ----------------------------------------------------------------------------------


def test_a_viewer_is_refused_admin_actions(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    sign_in(page, served.viewer_token)
    expect(page.locator("#whoami")).to_contain_text("viewer")
    # The token is limited to one camera: the others are not shown (nor in any list).
    expect(page.locator("#grid .card")).to_have_count(len(served.viewer_cameras))
    ids = page.locator("#grid .card").evaluate_all("cards => cards.map(c => c.dataset.cameraId)")
    assert sorted(ids) == sorted(served.viewer_cameras)
    expect(page.locator("#grid .card button:visible", has_text="Restart")).to_have_count(0)
    page.keyboard.press("2")
    page.locator("#filter-range").select_option("all")
    expect(page.locator("#events-body tr.event-row").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert {r["camera"] for r in rows(page)} == set(served.viewer_cameras)
    options = page.locator("#filter-camera-options option").evaluate_all("o => o.map(x => x.value)")
    assert sorted(options) == sorted(served.viewer_cameras)
    page.keyboard.press("4")
    expect(page.locator("#admin-role-note")).to_contain_text("refuses")
    form = page.locator("#add-camera-form")
    form.locator("input[name=id]").fill("viewer-was-here")
    form.locator("input[name=url]").fill("rtsp://192.0.2.1/stream")
    form.locator("button[type=submit]").click()
    result = page.locator("#add-camera-result")
    expect(result).to_contain_text("403", timeout=UI_TIMEOUT_MS)
    expect(result).to_contain_text("Refused")
    expect(page.locator("#audit-result")).to_contain_text("403")
    expect(page.locator("#token-result")).to_contain_text("403")
    expect(page.locator("#shard-result")).to_contain_text("403")
    expect(page.locator("#shard-list tr")).to_have_count(0)
    shot(page, screenshots, "refused")
    assert "viewer-was-here" not in api_cameras(admin_api)


def test_an_admin_reads_the_audit_log_and_tokens(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    admin_name = admin_api.get("/api/v1/session").json()["name"]
    sign_in(page, served.admin_token)
    page.keyboard.press("4")
    audit = page.locator("#audit-list tr")
    expect(audit.first).to_be_visible(timeout=UI_TIMEOUT_MS)
    who = set(page.locator("#audit-list tr td:nth-child(2)").all_text_contents())
    assert admin_name in who, "the admin's own reads are in the audit log"
    # The viewer token the server made is listed by name, never with its secret.
    tokens = admin_api.get("/api/v1/tokens").json()["items"]
    listed = page.locator("#token-list tr td:first-child").all_text_contents()
    assert {t["name"] for t in tokens} <= set(listed)
    assert served.viewer_token not in page.content()
    shot(page, screenshots, "admin")


def test_an_admin_sees_the_engine_in_one_process_as_one_shard(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    [shard] = admin_api.get("/api/v1/shards").json()["items"]
    assert shard["id"] == "local" and set(served.feed_cameras) <= set(shard["cameras"])
    sign_in(page, served.admin_token)
    page.keyboard.press("4")
    row = page.locator('#shard-list tr[data-shard-id="local"]')
    expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#shard-list tr")).to_have_count(1)
    cells = row.locator("td")
    expect(cells.nth(0)).to_have_text("local")
    expect(cells.nth(1)).to_have_text(shard["node"])
    expect(cells.nth(2)).to_have_text(str(shard["pid"]))
    expect(cells.nth(3)).to_have_text("running")
    listed = cells.nth(4).text_content() or ""
    count, _, ids = listed.partition(" ")
    assert int(count) == len(shard["cameras"]) and ids.split(", ") == shard["cameras"], listed
    expect(cells.nth(5)).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(cells.nth(6)).to_have_text(re.compile(r"^\d+ MiB$"))
    shot(page, screenshots, "shards")
    # one process: the camera cards name no shard
    page.keyboard.press("1")
    expect(page.locator("#grid .card").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#grid .card .cam-shard:visible")).to_have_count(0)

    # as the Ray engine answers (the server's answer with a shard and machine set): each
    # card names its shard
    def sharded(route: Any) -> None:
        answer = route.fetch()
        data = answer.json()
        for item in data["items"]:
            item["shard"], item["node"] = f"feedtag-shard-{item['id']}", "node-7"
        route.fulfill(response=answer, json=data)

    page.route(re.compile(r".*/api/v1/cameras(\?.*)?$"), sharded)
    for camera_id in served.feed_cameras:
        card = page.locator(f'#grid .card[data-camera-id="{camera_id}"] .cam-shard')
        expect(card).to_have_text(f"shard feedtag-shard-{camera_id} on node-7",
                                  timeout=UI_TIMEOUT_MS)  # fmt: skip


# -- hostile names ------------------------------------------------------------------------------


def test_hostile_camera_names_render_as_text(
    page: Any, admin_api: httpx.Client, served: Served, screenshots: Path
) -> None:
    sign_in(page, served.admin_token)
    page.keyboard.press("4")
    # One through the dashboard's own form (cookie + CSRF), one through the API (bearer).
    form = page.locator("#add-camera-form")
    form.locator("input[name=id]").fill("hostile-1")
    form.locator("input[name=name]").fill(HOSTILE_NAMES[0])
    form.locator("input[name=url]").fill("rtsp://192.0.2.1/stream")
    form.locator("button[type=submit]").click()
    expect(page.locator("#add-camera-result")).to_contain_text("Added camera hostile-1")
    added = admin_api.post(
        "/api/v1/cameras",
        json={"id": "hostile-2", "name": HOSTILE_NAMES[1], "url": "rtsp://192.0.2.1/other"},
    )
    assert added.status_code == 201, added.text
    try:
        page.keyboard.press("1")
        for camera_id, name in (("hostile-1", HOSTILE_NAMES[0]), ("hostile-2", HOSTILE_NAMES[1])):
            card = page.locator(f'#grid .card[data-camera-id="{camera_id}"]')
            expect(card.locator(".cam-name")).to_have_text(name, timeout=UI_TIMEOUT_MS)
        # The name goes into a notice too (restart is for operators and admins).
        page.get_by_role("button", name=f"Restart camera {HOSTILE_NAMES[1]}").click()
        expect(page.locator("#notice")).to_contain_text(f"Restarting {HOSTILE_NAMES[1]}")
        # An event whose label, zone and attributes are hostile text (stored directly: the
        # detector only knows COCO labels) shows them as text in the list, the dialog and the
        # chart legend.
        hostile = served.server.insert_event(
            served.feed_cameras[0], "wrong_way", label=HOSTILE_NAMES[1], zone=HOSTILE_NAMES[0],
            attributes={"note": HOSTILE_NAMES[0]},
        )  # fmt: skip
        page.goto(f"/#/events?kind=wrong_way&event={hostile.event_id}")
        row = page.locator(f'#events-body tr[data-event-id="{hostile.event_id}"]')
        expect(row.locator("td.label")).to_have_text(HOSTILE_NAMES[1], timeout=UI_TIMEOUT_MS)
        expect(row.locator("td.zone")).to_have_text(HOSTILE_NAMES[0])
        fields = page.locator("#event-fields")
        expect(fields).to_contain_text(HOSTILE_NAMES[1])
        expect(fields).to_contain_text(f"note{HOSTILE_NAMES[0]}")
        page.keyboard.press("Escape")
        page.keyboard.press("3")
        legend = page.locator("#chart-legend .legend-label", has_text=HOSTILE_NAMES[1])
        expect(legend).to_have_text(HOSTILE_NAMES[1], timeout=UI_TIMEOUT_MS)
        # A hostile label typed into the events filter is shown as text too.
        page.keyboard.press("2")
        page.fill("#filter-label", HOSTILE_NAMES[1])
        expect(page.locator("#events-status")).to_contain_text(HOSTILE_NAMES[1])
        page.keyboard.press("Escape")
        page.locator("#filter-label").blur()
        page.keyboard.press("1")
        shot(page, screenshots, "hostile-names")
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert page.locator('img[src="x"]').count() == 0
        assert page.locator("script").count() == 1  # only /static/app.js
        # Remove one through the dashboard (two clicks), the other through the API.
        page.keyboard.press("4")
        remove = page.get_by_role("button", name="Remove camera hostile-1")
        remove.click()
        remove.click()
        expect(page.locator("#admin-cameras-result")).to_contain_text("Removed camera hostile-1")
        assert "hostile-1" not in api_cameras(admin_api)
    finally:
        for camera_id in ("hostile-1", "hostile-2"):
            admin_api.delete(f"/api/v1/cameras/{camera_id}")
