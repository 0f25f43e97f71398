"""A simulcast track from lkproto in livekit-client's adaptive stream (issue 17, browser proof).

lkproto publishes a 1280x720 VP8 camera in the official three layers (``q`` 320x180, ``h``
640x360, ``f`` 1280x720). livekit-client in headless Chromium joins with
``adaptiveStream: true`` and attaches the track to a 160x90 ``<video>`` element: it asks the
server for the layer that fits the element (``UpdateTrackSettings`` with the element's size),
so the frames its decoder reports (``inbound-rtp`` ``frameWidth``/``frameHeight``) must be the
low layer's. Enlarging the element to 1280x720 must then bring the full-size layer, which shows
the low frames came from the layer choice, not from a publisher that only sends small frames.

The browser harness and its helpers are those of ``test_browser_media.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from tests.interop._helpers import our_options
from tests.interop.browser.harness import BrowserPeer, started_browser
from tests.interop.test_browser_media import (
    CONNECT_TIMEOUT_S,
    ROSTER_TIMEOUT_S,
    SUBSCRIBE_TIMEOUT_S,
    inbound_stats,
)
from tests.interop.test_simulcast import H, W, moving_picture

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

LOW = (320, 180)
SWITCH_TIMEOUT_S = 30.0

# args: [identity, css width, css height]. Attaches that participant's video track to a new
# <video> element of that size (adaptiveStream sizes its layer request from the element).
ATTACH_SIZED_JS = r"""
const p = room.remoteParticipants.get(args[0]);
if (!p) throw new Error(`no remote participant ${args[0]}`);
for (const pub of p.trackPublications.values()) {
  if (pub.kind !== 'video' || !pub.track) continue;
  const el = document.createElement('video');
  el.muted = true;
  el.autoplay = true;
  el.playsInline = true;
  el.style.width = `${args[1]}px`;
  el.style.height = `${args[2]}px`;
  el.style.display = 'block';
  document.body.appendChild(el);
  pub.track.attach(el);
  try { await el.play(); } catch (e) { /* the stats show whether frames arrive */ }
  return { sid: pub.trackSid, simulcasted: pub.simulcasted ?? null };
}
throw new Error('no subscribed video track');
"""

# args: [track sid, css width, css height]. Resizes that track's element.
RESIZE_JS = r"""
for (const p of room.remoteParticipants.values()) {
  const t = p.trackPublications.get(args[0])?.track;
  if (!t) continue;
  for (const el of t.attachedElements) {
    el.style.width = `${args[1]}px`;
    el.style.height = `${args[2]}px`;
  }
  return t.attachedElements.length;
}
return 0;
"""


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    async with started_browser() as peer:
        yield peer


@contextlib.asynccontextmanager
async def _adaptive_pair(server: LocalServer, browser: BrowserPeer) -> AsyncIterator[rtc.Room]:
    """lkproto (``lk``) and livekit-client with adaptiveStream (``web``) in a fresh room."""
    name = f"lk-web-simulcast-{uuid.uuid4().hex[:10]}"
    room = rtc.Room()
    try:
        await asyncio.wait_for(
            room.connect(server.url, server.create_token("lk", name), our_options()),
            scaled(CONNECT_TIMEOUT_S),
        )
        await browser.connect(
            server.url,
            server.create_token("web", name),
            room_options={"adaptiveStream": True, "dynacast": False},
        )
        await browser.wait_for_remote("lk", ROSTER_TIMEOUT_S)
        yield room
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))


async def _settles_at(
    browser: BrowserPeer, sid: str, size: tuple[int, int], frames: int = 30
) -> list[tuple[int, int, int]]:
    """Poll the browser's inbound-rtp stats of ``sid`` until ``frames`` frames were decoded at
    ``size`` without a change of size; the sizes seen, as ``(width, height, framesDecoded)`` at
    each change."""
    seen: list[tuple[int, int, int]] = []
    try:
        async with asyncio.timeout(scaled(SWITCH_TIMEOUT_S)):
            while True:
                entry = (await inbound_stats(browser, "lk")).get(sid) or {}
                stats = entry.get("inbound") or {}
                now = (stats.get("frameWidth", 0), stats.get("frameHeight", 0))
                decoded = int(stats.get("framesDecoded", 0))
                if not seen or seen[-1][:2] != now:
                    seen.append((*now, decoded))
                if now == size and decoded - seen[-1][2] >= frames:
                    return seen
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"no {frames} frames in a row at {size}; sizes seen {seen}") from None


async def test_a_small_adaptive_element_receives_the_low_layer(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    async with _adaptive_pair(livekit_server, browser) as room:
        source = rtc.VideoSource(W, H)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        publication = await room.local_participant.publish_track(
            track,
            rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA,
                video_codec=rtc.VideoCodec.VP8,
                simulcast=True,
            ),
        )
        feed = asyncio.ensure_future(moving_picture(source))
        try:
            sid = publication.sid
            await browser.wait_event(
                "TrackSubscribed", lambda e: e.get("track_sid") == sid, SUBSCRIBE_TIMEOUT_S
            )
            attached = await browser.eval(ATTACH_SIZED_JS, "lk", 160, 90)
            assert attached["sid"] == sid, attached
            assert attached["simulcasted"] is True, attached
            # The server may start on another layer before the element's size reaches it:
            # the proof is that the decoder settles on the low layer and stays there.
            low = await _settles_at(browser, sid, LOW)
            print(f"\nbrowser, 160x90 element: {low}")
            # The element grows: adaptiveStream asks for the full size, and gets it.
            assert await browser.eval(RESIZE_JS, sid, W, H) == 1
            full = await _settles_at(browser, sid, (W, H))
            print(f"browser, {W}x{H} element: {full}")
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
