"""ParticipantStream (AudioStream/VideoStream.from_participant): follows a participant's track
of one source across track changes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import pytest

from lkproto import rtc
from lkproto.errors import LocalProtocolError
from lkproto.rtc.participant_stream import ParticipantStream
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine
    from lkproto.asyncio.rpc import RpcDriver
    from lkproto.rtc.track import RemoteTrack

_BOUND_S = 5.0
MIC = int(rtc.TrackSource.SOURCE_MICROPHONE)


class _Track:
    def __init__(self, name: str, kind: rtc.TrackKind = rtc.TrackKind.KIND_AUDIO) -> None:
        self.name = name
        self.kind = kind

    def _apply_muted(self, muted: bool) -> None:
        pass


class _Stream:
    """What open_stream returns: a few frames, then the end (the track went away)."""

    def __init__(self, track: _Track, frames: int, *, hang: bool = False) -> None:
        self.left = [f"{track.name}:{i}" for i in range(frames)]
        self.closed = False
        # hang: after its frames, wait until closed (media that never ends by itself).
        self.hang = hang
        self._closed = asyncio.Event()

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> str:
        if not self.left:
            if self.hang:
                await self._closed.wait()
            raise StopAsyncIteration
        return self.left.pop(0)

    async def aclose(self) -> None:
        self.closed = True
        self._closed.set()


def _participant() -> rtc.RemoteParticipant:
    return rtc.RemoteParticipant(
        pb.ParticipantInfo(
            identity="bob",
            sid="PA_bob",
            tracks=[
                pb.TrackInfo(sid="TR_mic", type=pb.AUDIO, source=pb.MICROPHONE),
                pb.TrackInfo(sid="TR_screen", type=pb.AUDIO, source=pb.SCREEN_SHARE_AUDIO),
            ],
        )
    )


def _follow(
    participant: rtc.RemoteParticipant, closed: list[int] | None = None, *, hang: bool = False
) -> tuple[ParticipantStream[str], list[_Stream]]:
    opened: list[_Stream] = []

    def open_stream(track: RemoteTrack) -> _Stream:
        stream = _Stream(cast("_Track", track), 2, hang=hang)
        opened.append(stream)
        return stream

    on_close = (lambda: closed.append(1)) if closed is not None else None
    follower = ParticipantStream(participant, MIC, rtc.TrackKind.KIND_AUDIO, open_stream, on_close)
    return follower, opened


def _attach(participant: rtc.RemoteParticipant, sid: str, track: _Track) -> None:
    participant.track_publications[sid]._attach(cast("RemoteTrack", track))


async def test_waits_for_the_track_then_follows_the_next_one() -> None:
    bob = _participant()
    closed: list[int] = []
    follower, opened = _follow(bob, closed)
    first = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    assert not first.done()  # no microphone track yet
    _attach(bob, "TR_screen", _Track("screen"))  # another source: ignored
    await asyncio.sleep(0)
    assert not first.done()
    _attach(bob, "TR_mic", _Track("mic1"))
    async with asyncio.timeout(_BOUND_S):
        assert await first == "mic1:0"
        assert await follower.__anext__() == "mic1:1"
    # mic1's stream ended while its publication still shows it: wait for another track.
    nxt = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    assert not nxt.done()
    assert opened[0].closed
    bob.track_publications["TR_mic"]._detach()
    _attach(bob, "TR_mic", _Track("mic2"))
    async with asyncio.timeout(_BOUND_S):
        assert await nxt == "mic2:0"
    await follower.aclose()
    await follower.aclose()
    assert closed == [1]
    assert opened[1].closed
    with pytest.raises(StopAsyncIteration):
        await follower.__anext__()
    assert bob._track_watchers == []


async def test_a_detached_track_whose_media_never_ends_is_left_for_the_next() -> None:
    bob = _participant()
    follower, opened = _follow(bob, hang=True)
    _attach(bob, "TR_mic", _Track("mic1"))
    async with asyncio.timeout(_BOUND_S):
        assert [await follower.__anext__(), await follower.__anext__()] == ["mic1:0", "mic1:1"]
    nxt = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    assert not nxt.done()  # mic1's stream is still open, with nothing to read
    bob.track_publications["TR_mic"]._detach()  # unpublished: the room detaches it
    _attach(bob, "TR_mic", _Track("mic2"))
    async with asyncio.timeout(_BOUND_S):
        assert await nxt == "mic2:0"
    assert opened[0].closed
    await follower.aclose()


async def test_aclose_ends_a_waiting_iteration() -> None:
    bob = _participant()
    follower, _ = _follow(bob)
    waiting = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    await follower.aclose()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(_BOUND_S):
            await waiting


async def test_a_track_of_the_other_kind_is_ignored() -> None:
    bob = _participant()
    follower, _ = _follow(bob)
    _attach(bob, "TR_mic", _Track("video?", rtc.TrackKind.KIND_VIDEO))
    waiting = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    assert not waiting.done()
    await follower.aclose()
    with pytest.raises(StopAsyncIteration):
        await waiting


def test_a_local_participant_is_refused() -> None:
    local = rtc.LocalParticipant(
        pb.ParticipantInfo(identity="me"), cast("Engine", None), cast("RpcDriver", None)
    )
    with pytest.raises(LocalProtocolError, match="remote participant"):
        ParticipantStream(local, MIC, rtc.TrackKind.KIND_AUDIO, lambda t: _Stream(_Track("x"), 1))


def test_the_stream_classes_offer_from_participant() -> None:
    bob = _participant()
    audio = rtc.AudioStream.from_participant(participant=bob, track_source=MIC, sample_rate=16_000)
    video = rtc.VideoStream.from_participant(
        participant=bob, track_source=int(rtc.TrackSource.SOURCE_CAMERA)
    )
    assert isinstance(audio, ParticipantStream)
    assert isinstance(video, ParticipantStream)
    assert len(bob._track_watchers) == 2
