"""Media: a published tone is heard by the other side, mute state is seen (PROTOCOL-MAP §9,
§16 publish / receive cheat-sheets)."""

from __future__ import annotations

from lkproto.conformance._context import Context
from lkproto.conformance._registry import scenario
from lkproto.conformance.adapters import Client
from lkproto.conformance.scenarios._util import check

__all__: list[str] = []

_TOLERANCE_HZ = 15.0


async def _track_state(ctx: Context, client: Client, identity: str, muted: bool) -> None:
    async def seen() -> bool:
        view = (await client.remotes()).get(identity)
        return (
            view is not None and bool(view.tracks) and all(m == muted for m in view.tracks.values())
        )

    await ctx.until(seen, f"{client.identity} sees {identity}'s track muted={muted}")


@scenario("media.tone.publish", needs={"media"}, timeout=60)
async def tone_publish(ctx: Context) -> None:
    """The client publishes a 440 Hz tone (AddTrackRequest, TrackPublished, renegotiation, RTP)
    and the lkproto peer, subscribed, measures 440 Hz in what it decodes (PROTOCOL-MAP §9
    Publishing, Subscribing)."""
    client, peer = await ctx.pair()
    sid = await ctx.bounded(client.publish_tone(440.0), "publish a 440 Hz tone")
    check(sid.startswith("TR_"), f"track SID {sid!r}")
    peak = await ctx.bounded(peer.hear_tone("client", 1.0), "peer hears the tone", 40)
    check(abs(peak - 440.0) <= _TOLERANCE_HZ, f"peer hears {peak:.1f} Hz, expected 440 Hz")


@scenario("media.tone.receive", needs={"media_receive"}, timeout=60)
async def tone_receive(ctx: Context) -> None:
    """The lkproto peer publishes a 1 kHz tone and the client (auto-subscribed) measures 1 kHz
    (PROTOCOL-MAP §9 Subscribing, §16 receive tracks)."""
    client, peer = await ctx.pair()
    await ctx.bounded(peer.publish_tone(1000.0), "peer publishes a 1 kHz tone")
    peak = await ctx.bounded(client.hear_tone("peer", 1.0), "client hears the tone", 40)
    check(abs(peak - 1000.0) <= _TOLERANCE_HZ, f"client hears {peak:.1f} Hz, expected 1000 Hz")


@scenario("media.mute.seen_by_peer", needs={"media"}, timeout=60)
async def mute_seen(ctx: Context) -> None:
    """Muting the published track sends ``MuteTrackRequest{muted}``; the peer sees the
    publication muted, then unmuted (PROTOCOL-MAP §9 MuteTrackRequest, §16)."""
    client, peer = await ctx.pair()
    await ctx.bounded(client.publish_tone(440.0), "publish a tone")
    await _track_state(ctx, peer, "client", False)
    await ctx.bounded(client.set_tone_muted(True), "mute")
    await _track_state(ctx, peer, "client", True)
    await ctx.bounded(client.set_tone_muted(False), "unmute")
    await _track_state(ctx, peer, "client", False)


@scenario("media.mute.remote_seen", needs={"media", "roster"}, timeout=60)
async def remote_mute_seen(ctx: Context) -> None:
    """The client sees the peer's track muted and unmuted (TrackInfo.muted in
    ParticipantUpdate, PROTOCOL-MAP §9)."""
    client, peer = await ctx.pair()
    await ctx.bounded(peer.publish_tone(440.0), "peer publishes a tone")
    await _track_state(ctx, client, "peer", False)
    await peer.set_tone_muted(True)
    await _track_state(ctx, client, "peer", True)
    await peer.set_tone_muted(False)
    await _track_state(ctx, client, "peer", False)
