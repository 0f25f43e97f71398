"""Agent side, pre-connect decoding and SharedState (lkproto.agents) without a server."""

from __future__ import annotations

import io
import struct

import av
import pytest

from lkproto import agents
from lkproto.errors import LocalProtocolError
from lkproto.rtc import AudioFrame, AudioSource, LocalAudioTrack
from tests.unit.agents._fakes import FakeRoom, remote, settle


async def test_presence_validates_and_sets_the_attribute() -> None:
    room = FakeRoom()
    room.connect()
    presence = agents.AgentPresence(room.as_room())
    assert presence.state is None
    await presence.set_state("thinking")
    await presence.set_state(agents.AgentState.LISTENING)
    assert room.local_participant.attribute_calls == [
        {agents.ATTR_AGENT_STATE: "thinking"},
        {agents.ATTR_AGENT_STATE: "listening"},
    ]
    for bad in ("connecting", "failed", "bogus"):
        with pytest.raises(LocalProtocolError):
            await presence.set_state(bad)


def test_segment_ids_and_microphone_lookup() -> None:
    ids = {agents.new_segment_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("SG_") and len(i) == 15 for i in ids)
    room = FakeRoom()
    room.connect()
    room.remote_participants["bob"] = remote("bob")
    assert agents.find_microphone_track_sid(room.as_room(), "bob") is None
    assert agents.find_microphone_track_sid(room.as_room(), "nobody") is None
    assert agents.find_microphone_track_sid(room.as_room(), "me") is None


async def test_pcm_is_cut_into_100_ms_frames() -> None:
    pcm = struct.pack("<2500h", *range(2500))  # 1250 stereo samples at 8 kHz
    frames = await agents.decode_preconnect_audio(
        pcm + b"\x01", mime_type="audio/pcm", sample_rate=8000, num_channels=2
    )
    assert [f.samples_per_channel for f in frames] == [800, 450]
    assert b"".join(bytes(f.data.cast("B")) for f in frames) == pcm
    with pytest.raises(ValueError, match="format"):
        await agents.decode_preconnect_audio(b"", mime_type="", sample_rate=0, num_channels=1)


async def test_opus_buffers_are_decoded() -> None:
    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        for i in range(25):
            frame = AudioFrame(bytearray(960 * 2), 48000, 1, 960)._to_av(pts=i * 960)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    frames = await agents.decode_preconnect_audio(
        out.getvalue(), mime_type="audio/webm;codecs=opus", sample_rate=16000, num_channels=1
    )
    total = sum(f.duration for f in frames)
    assert 0.3 < total < 0.7
    assert {f.sample_rate for f in frames} == {16000}
    with pytest.raises(ValueError, match="decode"):
        await agents.decode_preconnect_audio(
            b"not opus", mime_type="audio/opus", sample_rate=16000, num_channels=1
        )


async def test_preconnect_buffer_records_the_source_and_restores_it() -> None:
    room = FakeRoom()
    source = AudioSource(16000, 1)
    track = LocalAudioTrack.create_audio_track("mic", source)
    buffer = agents.PreconnectBuffer(room.as_room(), track, max_seconds=0.1)
    with pytest.raises(LocalProtocolError, match="already"):
        agents.PreconnectBuffer(room.as_room(), track)
    await source.capture_frame(AudioFrame(bytearray(320 * 2), 16000, 1, 320))
    assert buffer.recording
    assert buffer.recorded_seconds == pytest.approx(0.02)
    for _ in range(10):
        await source.capture_frame(AudioFrame(bytearray(320 * 2), 16000, 1, 320))
    assert not buffer.recording  # capped at max_seconds of audio
    assert buffer.recorded_seconds == pytest.approx(0.1)
    assert "capture_frame" not in vars(source)
    await buffer.aclose()
    await source.aclose()
    with pytest.raises(LocalProtocolError, match="positive"):
        agents.PreconnectBuffer(room.as_room(), track, max_seconds=0)


async def test_preconnect_receiver_ignores_streams_without_track_id() -> None:
    room = FakeRoom()
    got: list[object] = []
    detach = agents.on_preconnect_audio(room.as_room(), lambda frames, who: got.append(who))
    with pytest.raises(ValueError, match="already set"):
        agents.on_preconnect_audio(room.as_room(), lambda frames, who: None)

    class Reader:
        def __init__(self, attributes: dict[str, str]) -> None:
            self.info = type("Info", (), {"attributes": attributes, "mime_type": "audio/pcm"})()
            self.closed = False

        async def read_all(self) -> bytes:
            return b"\x00\x00" * 1600

        def close(self) -> None:
            self.closed = True

    handler = room.byte_handlers[agents.TOPIC_PRECONNECT_AUDIO]
    no_track = Reader({"sampleRate": "16000", "channels": "1"})
    handler(no_track, "user")
    bad_rate = Reader({"trackId": "TR", "sampleRate": "x", "channels": "1"})
    handler(bad_rate, "user")
    good = Reader({"trackId": "TR", "sampleRate": "16000", "channels": "1"})
    handler(good, "user")
    await settle()
    assert got == ["user"]
    assert no_track.closed
    assert bad_rate.closed
    detach()
    assert agents.TOPIC_PRECONNECT_AUDIO not in room.byte_handlers


async def test_shared_state_encodes_decodes_and_reads_its_writes() -> None:
    room = FakeRoom()
    state = agents.SharedState(room.as_room())
    events: list[tuple[str, list[str]]] = []
    state.on("changed", lambda p, keys: events.append((p.identity, keys)))
    metas: list[tuple[str, str]] = []
    state.on("room_metadata_changed", lambda old, new: metas.append((old, new)))
    assert state.get("me", "k", "d") == "d"  # not connected: no local participant
    room.connect()
    await state.set("k", {"a": [1, 2.5, None, True]})
    await state.update({})
    await state.delete()
    assert state.get("me", "k") == {"a": [1, 2.5, None, True]}
    assert room.local_participant.attribute_calls == [{"k": '{"a":[1,2.5,null,true]}'}]
    await state.delete("k")
    assert state.get("me", "k", 0) == 0
    with pytest.raises(LocalProtocolError, match="JSON"):
        await state.set("x", {1, 2})  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="keys"):
        await state.set("", 1)
    bob = remote("bob", note="plain", n="3")
    room.join(bob)
    assert state.get("bob", "note") == "plain"
    assert state.get(bob, "n") == 3
    assert state.items("bob") == {"note": "plain", "n": 3}
    room.change_attributes(bob, note="plain", n="4")
    assert events == [("bob", ["n"])]
    room.emit("room_metadata_changed", "old", "new")
    assert metas == [("old", "new")]
    assert state.room_metadata == "room-meta"
    state.close()
    room.emit("room_metadata_changed", "new", "newer")
    assert len(metas) == 1
