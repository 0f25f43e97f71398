"""Reliable data-packet sequencing: the sender's resend buffer and the receiver's duplicate filters.

Theory of operation
-------------------
Every ``DataPacket`` sent on ``_reliable`` carries ``sequence``, a per-session counter starting at
1 (PROTOCOL-MAP §3 Reliable sequence / resume buffer). Two sans-I/O machines implement the two ends:

**Sender** (:class:`ReliableSender`, after ``JS:src/room/data-channel/ReliableDataChannel.ts`` and
``JS:src/utils/dataPacketBuffer.ts``). :meth:`~ReliableSender.stamp` writes the next sequence into
the packet, encodes it and keeps ``(sequence, bytes)`` in a FIFO resend buffer. The buffer is
trimmed from the front by :meth:`~ReliableSender.on_buffered_amount`: the driver reports how many
of the newest bytes handed to the channel have not yet arrived, and every entry whose bytes have
all arrived is dropped. JS reports the channel's ``bufferedAmount`` (bytes not yet given to the
transport); lkproto's driver adds what the SCTP association holds unacknowledged
(``PeerConnection.unacknowledged_bytes``), so that a packet stays until the server has it.
After a resume the server's ``ReconnectResponse.last_message_seq`` tells what it accepted;
:meth:`~ReliableSender.resume` drops those entries and returns the rest, in order, to hand to the
new channel. A full reconnect starts a new session: :meth:`~ReliableSender.restart` keeps,
renumbered from 1, every packet the old session never delivered (see below);
:meth:`~ReliableSender.reset` forgets everything.

Between losing the channel and the resume, the driver calls :meth:`~ReliableSender.suspend`. From
then on stamped packets are buffered as *unsent* (the driver does not hand them to any channel; they
come back from :meth:`~ReliableSender.resume`), and ``bufferedAmount`` reports are ignored: the old
channel's queue says nothing about what the server received.

Buffer accounting. Entries are contiguous in sequence and end at the newest stamp. While not
suspended, every entry has been handed to the current channel, in order (the resend of
:meth:`~ReliableSender.resume` included), so the reported amount is the newest bytes of the
buffer. The oldest entry is dropped when the bytes *after* it are at least the amount, i.e. none
of its bytes is among those still on their way; an entry partly covered is kept (SCTP may have
delivered the first fragments of a message only). (JS tracks a per-entry "sent" flag for the
same purpose and keeps the entry when the two are exactly equal: one packet of difference at the
boundary.) A packet whose send raised never reached the channel:
:meth:`~ReliableSender.withdraw` takes it back out, so it is neither counted as handed nor sent
later behind the back of a caller who saw the error.

Bound. The buffer holds at most ``max_buffer_bytes`` of encoded packets. Dropping entries to make
room would be safe only for entries known to have left the queue, and those are already trimmed;
any other entry might be the one the server never got, and dropping it would put a hole in the
reliable stream (a data stream with a missing chunk is corrupt). So a stamp that does not fit is
*refused* with :class:`ResendBufferFullError` before anything changes (no sequence is consumed):
back-pressure, which the driver turns into waiting for a trim or a resume. In normal operation the
buffer is about the channel's ``bufferedAmount`` (the driver keeps it under its high-water mark),
so only sends piling up during an outage reach the bound.

Full reconnect. The new session has no ``last_message_seq`` to tell what the server got, and
receivers key their duplicate filter by the sender's SID, which changes: only packets the server
certainly never got can be sent again without risking a duplicate. Those are the ones stamped
while suspended (never handed to a channel) and, of those handed to the old channel, the newest
bytes the closed channel had not delivered: its final ``bufferedAmount`` (aiortc never subtracts
the messages it discards on close) plus what its SCTP association held from the first message the
server had not acknowledged in full (an ordered stream delivers nothing past it). The driver
passes that amount to :meth:`~ReliableSender.restart`; the kept packets are re-stamped from
sequence 1 in their order and resent after the join. The older ones were acknowledged by the
server's SCTP, so the server had them; they are counted in
:attr:`~ReliableSender.abandoned_packets` (issue 15: the JS and Rust SDKs drop the whole buffer,
so everything in flight is lost silently). What this cannot cover: a packet the server had
acknowledged but not yet forwarded when it died (SIGKILL), and a packet the server forwarded to a
receiver whose own transport died before it arrived; the protocol has no end-to-end
acknowledgement for either. The reverse also happens: the server may have received a kept
packet whose acknowledgement never came back (SACKs lost, or a consent failure on a starved
host closed the association first), so the resend can repeat it. Nonces catch that repeat.

Nonces. livekit-server drops a user packet whose ``UserPacket.nonce`` (16 bytes, a UUID) it has
seen among the room's last 100 (PROTOCOL-MAP §3 "What the server does with an inbound packet" item
6; ``pkg/rtc/user_packet_deduper.go (IsDuplicate)``, called from ``pkg/rtc/room.go
(BroadcastDataPacketForRoom)``) and forwards the nonce to the receivers.
:meth:`~ReliableSender.stamp` gives every user packet without a nonce a fresh random one
(``nonce_source``, injected in tests) the first time it is stamped; the buffer keeps the encoded
packet, and :meth:`~ReliableSender.restart` renumbers it without touching anything else, so a
resend after a full reconnect repeats the same nonce under the new SID and sequence. A nonce the
caller set is kept. Control packets (RPC, streams, DTMF, ...) have no nonce field; streams and RPC
deduplicate by their own ids. A user packet whose nonce would push it past
:data:`~lkproto.wire.DATA_PACKET_MAX_BYTES` goes without one, so that lkproto accepts the same
payloads as the official SDKs, which set no nonce at all
(``JS:src/room/participant/LocalParticipant.ts (publishData)``,
``RS:livekit/src/room/participant/local_participant.rs (publish_data)``; only their RoomService
``SendData`` does, as :mod:`lkproto.api` does). The server's window is 100 nonces for the whole
room, so it stops the repeat only when fewer than 100 other user packets with nonces passed
through the room between the original and the resend; :class:`UserNonceFilter` stops it at
lkproto receivers beyond that. Under end-to-end encryption :meth:`~ReliableSender.stamp_sealed`
gives the nonce (same source, same rules) before the packet is sealed, so it travels inside the
ciphertext: ``EncryptedPacketPayload.user`` is the whole ``UserPacket`` (PROTOCOL-MAP §11; the
JS SDK moves the packet's value into the payload as it is, ``JS:src/e2ee/utils.ts
(asEncryptablePacket)``), and the buffer keeps the sealed bytes, so the resend repeats the same
nonce. The server cannot see it and forwards the resend; lkproto receivers apply
:class:`UserNonceFilter` to the decrypted packet and drop it, official receivers deliver it twice.

**Receiver** (:class:`ReliableReceiver`, after ``JS:src/room/RTCEngine.ts (handleDataMessage)``).
The server forwards a sender's packets with ``participant_sid`` set and may replay them after a
migration; :meth:`~ReliableReceiver.accept` drops a packet whose sequence is not above the last one
accepted from the same SID. The state per SID expires 30 s after its last accepted packet
(``reliabeReceiveStateTTL`` in JS, ``RELIABLE_RECEIVED_STATE_TTL`` in Rust);
:meth:`~ReliableReceiver.receive_states` feeds ``SyncState.datachannel_receive_states`` on resume.
A resend after the sender's full reconnect comes with a new SID and new sequences, so this filter
cannot see it as a repeat; :class:`UserNonceFilter` can, for user packets: it remembers, per
sender *identity*, the nonces accepted in the last ``USER_NONCE_TTL_S`` (at most
``USER_NONCE_MAX_PER_IDENTITY`` each) and drops a packet whose nonce it holds. Packets without a
16-byte nonce (from the official SDKs) pass untouched.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

from lkproto.core.durations import positive_seconds
from lkproto.errors import LocalProtocolError
from lkproto.wire import DATA_PACKET_MAX_BYTES, decode_data_packet, encode_data_packet, pb

__all__ = [
    "DEFAULT_RESEND_BUFFER_MAX_BYTES",
    "RELIABLE_RECEIVE_STATE_TTL_S",
    "SEQUENCE_MAX",
    "USER_NONCE_BYTES",
    "USER_NONCE_MAX_PER_IDENTITY",
    "USER_NONCE_TTL_S",
    "ReliableReceiver",
    "ReliableSender",
    "ResendBufferFullError",
    "UserNonceFilter",
    "random_nonce",
]

# PROTOCOL-MAP §3 Buffered-amount thresholds: JS blocks reliable sends above 1 MiB buffered, so in
# normal operation the resend buffer stays near that; the rest is headroom for sends made during an
# outage (resume can take tens of seconds, PROTOCOL-MAP §10).
DEFAULT_RESEND_BUFFER_MAX_BYTES: Final = 16 * 1024 * 1024
# PROTOCOL-MAP §3 Reliable sequence: JS ``reliabeReceiveStateTTL``, Rust
# ``RELIABLE_RECEIVED_STATE_TTL``.
RELIABLE_RECEIVE_STATE_TTL_S: Final = 30.0
# ``DataPacket.sequence`` is a uint32 (PROTOCOL-MAP §3 DataPacket).
SEQUENCE_MAX: Final = 2**32 - 1
# PROTOCOL-MAP §3 "What the server does with an inbound packet" item 6 and §4: ``UserPacket.nonce``
# is a 16-byte UUID; livekit-server checks and records only a nonce that parses as one
# (``pkg/rtc/user_packet_deduper.go (IsDuplicate)``, ``uuid.FromBytes``: exactly 16 bytes).
USER_NONCE_BYTES: Final = 16
# How long a receiver remembers a sender's nonce: longer than the way from a packet's first
# delivery to its resend after the sender's full reconnect in all but long outages: the 8 s
# silence before the reconnect starts (core/reconnect.py TRANSPORT_SILENCE_S), the first five
# attempts of the reconnect policy (9 s of delays, DEFAULT_RECONNECT_DELAYS_S, plus the attempts)
# and the rejoin hold (at most 20 s, REJOIN_HOLD_S). Memory is the bound on it: ~160 bytes per
# nonce, so a receiver among 100 senders of one packet a second holds ~1 MB.
USER_NONCE_TTL_S: Final = 60.0
# The count bound per sender identity: the resend can repeat only what the old SCTP association
# held unacknowledged, the newest packets before the fault, so the newest nonces are the ones to
# keep. The server's advertised SCTP receive window bounds what a sender has in flight (pion/sctp
# ``association.go initialRecvBufSize``, 1 MiB by default): 8192 covers it for packets of 128
# bytes or more. At most ~1.3 MB per sender that sends that many within the TTL.
USER_NONCE_MAX_PER_IDENTITY: Final = 8192


def random_nonce() -> bytes:
    """A fresh ``UserPacket.nonce``: the 16 bytes of a random (version 4) UUID."""
    return uuid.uuid4().bytes


class ResendBufferFullError(LocalProtocolError):
    """A stamp was refused because the resend buffer would exceed its byte bound.

    Nothing changed: the packet keeps its previous ``sequence`` and no sequence was consumed. Wait
    for :meth:`ReliableSender.on_buffered_amount` to trim or for :meth:`ReliableSender.resume`,
    then stamp again.

    Attributes:
        size: encoded size of the refused packet.
        buffered_bytes: bytes held in the buffer at the time.
        max_bytes: the buffer's bound.
    """

    def __init__(self, size: int, buffered_bytes: int, max_bytes: int) -> None:
        super().__init__(f"resend buffer full: {buffered_bytes} + {size} bytes exceeds {max_bytes}")
        self.size = size
        self.buffered_bytes = buffered_bytes
        self.max_bytes = max_bytes


class ReliableSender:
    """Sequence stamping and the resend buffer of one session's ``_reliable`` channel.

    Driver contract (see the module docstring):

    * send: ``data = sender.stamp(packet)``; unless :attr:`suspended`, hand ``data`` to the
      channel (if that raises, :meth:`withdraw` it), then report
      ``sender.on_buffered_amount(undelivered)`` with the channel's bytes not yet delivered.
    * channel lost / reconnect started: :meth:`suspend`; keep stamping, do not send.
    * resumed: hand every packet of ``sender.resume(reconnect.last_message_seq)`` to the new
      channel, in order, before any other packet and before the next
      :meth:`on_buffered_amount`.
    * full reconnect: :meth:`restart` with the closed channel's undelivered bytes (or
      :meth:`reset` to forget everything).

    Args:
        max_buffer_bytes: bound on the encoded bytes held for resending; at least
            :data:`~lkproto.wire.DATA_PACKET_MAX_BYTES` so that any packet fits an empty buffer.
        nonce_source: makes the ``UserPacket.nonce`` :meth:`stamp` gives a user packet that has
            none (module docstring, "Nonces"); :func:`random_nonce` unless a test injects one.

    Raises:
        LocalProtocolError: ``max_buffer_bytes`` is not an int of at least
            :data:`~lkproto.wire.DATA_PACKET_MAX_BYTES`.
    """

    def __init__(
        self,
        *,
        max_buffer_bytes: int = DEFAULT_RESEND_BUFFER_MAX_BYTES,
        nonce_source: Callable[[], bytes] = random_nonce,
    ) -> None:
        if (
            not isinstance(max_buffer_bytes, int)
            or isinstance(max_buffer_bytes, bool)
            or max_buffer_bytes < DATA_PACKET_MAX_BYTES
        ):
            raise LocalProtocolError(
                f"max_buffer_bytes must be an int >= {DATA_PACKET_MAX_BYTES}, "
                f"got {max_buffer_bytes!r}"
            )
        self._max_bytes = max_buffer_bytes
        self._nonce_source = nonce_source
        self._next_sequence = 1
        self._entries: deque[tuple[int, bytes]] = deque()
        self._total_bytes = 0
        self._suspended = False
        self._lost = 0
        self._abandoned = 0
        # Entries with a sequence below this were handed to the current channel.
        self._handed_end = 1

    # ---------------------------------------------------------------- state (read-only)

    @property
    def next_sequence(self) -> int:
        """The sequence the next :meth:`stamp` will assign."""
        return self._next_sequence

    @property
    def suspended(self) -> bool:
        """True between :meth:`suspend` and the next :meth:`resume` / :meth:`reset`."""
        return self._suspended

    @property
    def buffered_count(self) -> int:
        """Number of packets held for resending."""
        return len(self._entries)

    @property
    def buffered_bytes(self) -> int:
        """Encoded bytes held for resending."""
        return self._total_bytes

    @property
    def buffered_sequences(self) -> list[int]:
        """Sequences held for resending, oldest first (a contiguous run)."""
        return [sequence for sequence, _ in self._entries]

    @property
    def max_buffer_bytes(self) -> int:
        """The bound given to the constructor."""
        return self._max_bytes

    @property
    def lost_packets(self) -> int:
        """Packets the server never accepted that could not be resent, summed over all resumes.

        These had left the channel's queue (and were trimmed) but their sequence was above the
        server's ``last_message_seq``: they were lost with the old transport.
        """
        return self._lost

    @property
    def abandoned_packets(self) -> int:
        """Packets :meth:`restart` did not keep, summed over all full reconnects.

        The old transport had delivered them to the server (as far as the driver's count tells),
        so resending them could deliver them twice.
        """
        return self._abandoned

    # ---------------------------------------------------------------- inputs

    def stamp(self, packet: pb.DataPacket) -> bytes:
        """Assign the next sequence to ``packet``, encode it and keep it for resending.

        ``packet.sequence`` is set in place (the caller may log it), and so is a fresh
        ``UserPacket.nonce`` when ``packet`` is a user packet without one (a nonce already set is
        kept; module docstring, "Nonces"). On any error both are restored and no sequence is
        consumed.

        Returns:
            The encoded packet. Hand it to the channel unless :attr:`suspended`.

        Raises:
            LocalProtocolError: the packet cannot be encoded or exceeds
                :data:`~lkproto.wire.DATA_PACKET_MAX_BYTES`, the uint32 sequence space is
                exhausted (only a full reconnect, :meth:`reset`, starts it again), or the nonce
                source returned something other than 16 bytes.
            ResendBufferFullError: the buffer cannot take the packet now.
        """
        return self._stamp(packet, None)[1]

    def stamp_sealed(
        self, packet: pb.DataPacket, seal: Callable[[pb.DataPacket], pb.DataPacket] | None
    ) -> tuple[pb.DataPacket, bytes]:
        """:meth:`stamp` ``packet``, then keep and encode what ``seal`` makes of it.

        For end-to-end encryption: the sequence and the nonce go onto ``packet`` (in place, as
        :meth:`stamp` does) before ``seal`` moves its value into an ``EncryptedPacket``, so an
        encrypted user packet carries its nonce inside the ciphertext and the resend after a
        full reconnect repeats it (module docstring, "Nonces"). ``seal`` must copy the outer
        fields (``sequence``) onto the packet it returns and may return ``packet`` itself.
        Calling this again for a withdrawn packet seals the same nonce again.

        Args:
            packet: the packet as the application made it.
            seal: the sealer (``Engine.data_sealer``); None is the same as :meth:`stamp`.

        Returns:
            The sealed packet (for logging) and its encoding, as :meth:`stamp` returns it.

        Raises:
            LocalProtocolError: as :meth:`stamp`, and whatever ``seal`` raises as one (no key);
                ``packet`` is restored either way.
            ResendBufferFullError: the buffer cannot take the packet now.
        """
        return self._stamp(packet, seal)

    def _stamp(
        self, packet: pb.DataPacket, seal: Callable[[pb.DataPacket], pb.DataPacket] | None
    ) -> tuple[pb.DataPacket, bytes]:
        sequence = self._next_sequence
        if sequence > SEQUENCE_MAX:
            raise LocalProtocolError("sequence space exhausted; reset() on a full reconnect")
        previous = packet.sequence
        packet.sequence = sequence
        nonced = packet.WhichOneof("value") == "user" and not packet.user.nonce
        try:
            if nonced:
                nonce = self._nonce_source()
                if not isinstance(nonce, bytes) or len(nonce) != USER_NONCE_BYTES:
                    nonced = False
                    raise LocalProtocolError(
                        f"nonce_source must return {USER_NONCE_BYTES} bytes, got {nonce!r}"
                    )
                packet.user.nonce = nonce
            wire = packet if seal is None else seal(packet)
            try:
                data = encode_data_packet(wire)
            except LocalProtocolError:
                if not nonced:
                    raise
                # A payload the official SDKs accept must not be refused for the 18 bytes the
                # nonce adds (sealed: inside the ciphertext): such a packet goes without one
                # (module docstring, "Nonces").
                packet.user.nonce = b""
                nonced = False
                wire = packet if seal is None else seal(packet)
                data = encode_data_packet(wire)
            if self._total_bytes + len(data) > self._max_bytes:
                raise ResendBufferFullError(len(data), self._total_bytes, self._max_bytes)
        except Exception:
            packet.sequence = previous
            if nonced:
                packet.user.nonce = b""
            raise
        self._entries.append((sequence, data))
        self._total_bytes += len(data)
        self._next_sequence = sequence + 1
        if not self._suspended:
            self._handed_end = self._next_sequence
        return wire, data

    def on_buffered_amount(self, buffered_amount: int) -> int:
        """Drop the oldest packets none of whose bytes is still on its way.

        Ignored while :attr:`suspended`.

        Args:
            buffered_amount: how many of the newest bytes handed to the channel have not yet
                arrived: at least its ``bufferedAmount`` (bytes not yet given to the transport).

        Returns:
            How many packets were dropped from the buffer.

        Raises:
            LocalProtocolError: ``buffered_amount`` is negative.
        """
        if buffered_amount < 0:
            raise LocalProtocolError(f"buffered_amount must be >= 0, got {buffered_amount}")
        if self._suspended:
            return 0
        dropped = 0
        entries = self._entries
        while entries:
            size = len(entries[0][1])
            if self._total_bytes - size < buffered_amount:
                break
            entries.popleft()
            self._total_bytes -= size
            dropped += 1
        return dropped

    def withdraw(self, sequence: int) -> None:
        """Take back the newest packet, whose send raised: it never reached a channel.

        Its sequence is given back (the next :meth:`stamp` reuses it), so it is neither resent
        later nor counted as handed to the channel.

        Args:
            sequence: the sequence :meth:`stamp` gave it.

        Raises:
            LocalProtocolError: ``sequence`` is not the newest packet in the buffer.
        """
        entries = self._entries
        if not entries or entries[-1][0] != sequence or sequence != self._next_sequence - 1:
            raise LocalProtocolError(f"sequence {sequence} is not the newest packet to withdraw")
        self._total_bytes -= len(entries.pop()[1])
        self._next_sequence = sequence
        self._handed_end = min(self._handed_end, sequence)

    def suspend(self) -> None:
        """The channel is gone or a reconnect started: buffer new stamps unsent until resumed.

        Idempotent. Entries already sent stay in the buffer for :meth:`resume`.
        """
        self._suspended = True

    def resume(self, last_message_seq: int) -> list[bytes]:
        """The session was resumed: drop what the server accepted and return the rest to resend.

        Every returned packet counts as handed to the (new) channel; the sender is no longer
        suspended. Never raises on the server's value: a ``last_message_seq`` beyond anything
        stamped empties the buffer.

        Args:
            last_message_seq: ``ReconnectResponse.last_message_seq`` (PROTOCOL-MAP §10), the
                highest sequence the server accepted from us (0 = none).

        Returns:
            The encoded packets with a sequence above ``last_message_seq``, in sequence order.
        """
        entries = self._entries
        while entries and entries[0][0] <= last_message_seq:
            self._total_bytes -= len(entries.popleft()[1])
        newest = self._next_sequence - 1
        expected = newest - max(last_message_seq, 0)
        if expected > len(entries):
            self._lost += expected - len(entries)
        self._suspended = False
        self._handed_end = self._next_sequence
        return [data for _, data in entries]

    def restart(self, queued_bytes: int) -> int:
        """Full reconnect: keep, renumbered from 1, what the old channel never transmitted.

        Call after the old channel is closed, with how many of the newest bytes handed to it
        never arrived (module docstring, "Full reconnect"); the sender stays (or becomes)
        suspended, so new stamps queue behind the kept packets and :meth:`resume` with 0 returns
        them all for the new channel.

        Args:
            queued_bytes: the closed old channel's undelivered bytes (its ``bufferedAmount`` plus
                what SCTP held unacknowledged; 0 if there was no channel).

        Returns:
            How many packets were dropped because the old transport had delivered them (also
            added to :attr:`abandoned_packets`).

        Raises:
            LocalProtocolError: ``queued_bytes`` is negative.
        """
        if queued_bytes < 0:
            raise LocalProtocolError(f"queued_bytes must be >= 0, got {queued_bytes}")
        handed = [entry for entry in self._entries if entry[0] < self._handed_end]
        unsent = [entry for entry in self._entries if entry[0] >= self._handed_end]
        # The newest ``queued_bytes`` bytes of what was handed over never arrived; a packet with
        # any of its bytes among them is kept (module docstring, "Buffer accounting").
        keep_from = len(handed)
        while keep_from and queued_bytes > 0:
            queued_bytes -= len(handed[keep_from - 1][1])
            keep_from -= 1
        dropped = keep_from
        self._abandoned += dropped
        self._entries.clear()
        self._total_bytes = 0
        sequence = 1
        for _, data in handed[keep_from:] + unsent:
            packet = decode_data_packet(data)
            packet.sequence = sequence
            renumbered = encode_data_packet(packet)
            self._entries.append((sequence, renumbered))
            self._total_bytes += len(renumbered)
            sequence += 1
        self._next_sequence = sequence
        self._handed_end = 1
        self._suspended = True
        return dropped

    def reset(self) -> None:
        """Full reconnect: a new session starts at sequence 1 with an empty buffer."""
        self._next_sequence = 1
        self._entries.clear()
        self._total_bytes = 0
        self._suspended = False
        self._handed_end = 1


def _check_ttl(value: float) -> float:
    return positive_seconds("state_ttl_s", value)


class ReliableReceiver:
    """Duplicate suppression for sequenced reliable packets, per sending participant SID.

    A packet is checked only when it has both ``sequence > 0`` and a ``participant_sid`` (JS
    ``handleDataMessage``); anything else is always accepted. Per SID the last accepted sequence
    is kept until ``state_ttl_s`` after the last accepted packet (a duplicate does not extend it).
    An expired state counts as absent even before it is pruned, so results never depend on when
    pruning ran. Memory is bounded without a timer: every :meth:`accept` of a sequenced packet
    first forgets the senders whose state has expired (the engine never arms one; a room that
    sees thousands of participants come and go over a day holds only those heard from within
    ``state_ttl_s``). :meth:`handle_timer` / :meth:`get_timer` prune for a driver that wants
    memory back sooner.

    Args:
        state_ttl_s: how long a sender's state lives after its last accepted packet.

    Raises:
        LocalProtocolError: ``state_ttl_s`` is not a positive finite number.
    """

    def __init__(self, *, state_ttl_s: float = RELIABLE_RECEIVE_STATE_TTL_S) -> None:
        self._ttl = _check_ttl(state_ttl_s)
        # sid -> (last accepted sequence, expiry). Kept in the order of the last accepted packet,
        # which with a monotonic clock is expiry order: the first entry holds the next deadline.
        # (Were the clock to go backwards, pruning could only come late; accept() checks expiry
        # itself.)
        self._states: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._dropped = 0

    @property
    def duplicates_dropped(self) -> int:
        """How many packets :meth:`accept` refused since construction."""
        return self._dropped

    def last_sequence(self, participant_sid: str, now: float) -> int | None:
        """The last sequence accepted from ``participant_sid``, None if unknown or expired."""
        state = self._states.get(participant_sid)
        if state is None or now >= state[1]:
            return None
        return state[0]

    def accept(self, packet: pb.DataPacket, now: float) -> bool:
        """Decide whether a received packet is new. Never raises.

        Args:
            packet: the decoded packet (after decryption, if any: the sequence is in the clear).
            now: current monotonic time in seconds.

        Returns:
            False for a duplicate or out-of-order sequenced packet (drop it), True otherwise.
        """
        sequence = packet.sequence
        sid = packet.participant_sid
        if sequence == 0 or not sid:
            return True
        self.handle_timer(now)
        state = self._states.get(sid)
        if state is not None and now < state[1] and sequence <= state[0]:
            self._dropped += 1
            return False
        self._states[sid] = (sequence, now + self._ttl)
        self._states.move_to_end(sid)
        return True

    def handle_timer(self, now: float) -> None:
        """Forget every sender whose state has expired at ``now``."""
        states = self._states
        while states:
            sid, (_, expiry) = next(iter(states.items()))
            if now < expiry:
                break
            del states[sid]

    def get_timer(self) -> float | None:
        """When the oldest sender state expires, or None when no state is held."""
        for _, expiry in self._states.values():
            return expiry
        return None

    def receive_states(self, now: float | None = None) -> list[pb.DataChannelReceiveState]:
        """The ``SyncState.datachannel_receive_states`` to send on resume (PROTOCOL-MAP §10).

        Args:
            now: if given, expired states are left out.

        Returns:
            One entry per sender SID, in order of their last accepted packet.
        """
        return [
            pb.DataChannelReceiveState(publisher_sid=sid, last_seq=sequence)
            for sid, (sequence, expiry) in self._states.items()
            if now is None or now < expiry
        ]

    def reset(self) -> None:
        """Full reconnect: forget every sender (JS clears the map with its peer connections)."""
        self._states.clear()


class UserNonceFilter:
    """Duplicate suppression for user packets by ``UserPacket.nonce``, per sender identity.

    The receiving half of the module docstring's "Nonces": a user packet whose 16-byte nonce was
    already accepted from the same sender identity within ``ttl_s`` is a duplicate. Identity, not
    SID: the resend after a sender's full reconnect comes from its new session. A packet that is
    not a user packet, or whose nonce is not exactly 16 bytes (the official SDKs send none), is
    always accepted and not recorded, as livekit-server does.

    Memory is bounded without a timer: per identity at most ``max_per_identity`` nonces (the
    oldest go first), and :meth:`accept` forgets expired nonces of the sender it handles and every
    sender whose newest nonce has expired. :meth:`handle_timer` / :meth:`get_timer` prune the rest
    for a driver that wants memory back sooner. An expired nonce counts as absent even before it
    is pruned, so results never depend on when pruning ran. Different identities never evict each
    other's nonces.

    Args:
        ttl_s: how long a nonce is remembered after the packet that carried it was accepted.
        max_per_identity: how many nonces are remembered per sender identity, at least 1.

    Raises:
        LocalProtocolError: ``ttl_s`` is not a positive finite number, or ``max_per_identity``
            is not an int of at least 1.
    """

    def __init__(
        self,
        *,
        ttl_s: float = USER_NONCE_TTL_S,
        max_per_identity: int = USER_NONCE_MAX_PER_IDENTITY,
    ) -> None:
        self._ttl = positive_seconds("ttl_s", ttl_s)
        if (
            not isinstance(max_per_identity, int)
            or isinstance(max_per_identity, bool)
            or max_per_identity < 1
        ):
            raise LocalProtocolError(
                f"max_per_identity must be an int >= 1, got {max_per_identity!r}"
            )
        self._max = max_per_identity
        # identity -> (nonce -> expiry), each in accept order (= expiry order with a monotonic
        # clock); identities ordered by their last accepted packet, so the first one is the
        # first whose every nonce has expired.
        self._seen: OrderedDict[str, OrderedDict[bytes, float]] = OrderedDict()
        self._held = 0
        self._dropped = 0

    @property
    def duplicates_dropped(self) -> int:
        """How many packets :meth:`accept` refused since construction."""
        return self._dropped

    @property
    def held(self) -> int:
        """How many nonces are remembered now (expired ones included until pruned)."""
        return self._held

    @property
    def identities(self) -> list[str]:
        """The sender identities with remembered nonces, least recently active first."""
        return list(self._seen)

    def accept(self, packet: pb.DataPacket, now: float) -> bool:
        """Decide whether a received packet is new. Never raises.

        Args:
            packet: the decoded packet (``participant_identity`` is set by the server).
            now: current monotonic time in seconds.

        Returns:
            False when ``packet`` is a user packet whose nonce was accepted from the same sender
            identity less than ``ttl_s`` ago (drop it), True otherwise.
        """
        if packet.WhichOneof("value") != "user":
            return True
        nonce = packet.user.nonce
        if len(nonce) != USER_NONCE_BYTES:
            return True
        # The server fills both; the deprecated copy is the fallback (PROTOCOL-MAP §3 item 3).
        identity = packet.participant_identity or packet.user.participant_identity
        self._forget_idle(now)
        seen = self._seen.get(identity)
        if seen is None:
            seen = self._seen[identity] = OrderedDict()
        else:
            self._prune(seen, now)
            expiry = seen.get(nonce)
            if expiry is not None and now < expiry:
                self._dropped += 1
                return False
            if expiry is not None:  # expired but kept: only a clock that went back gets here
                del seen[nonce]
                self._held -= 1
        seen[nonce] = now + self._ttl
        self._held += 1
        while len(seen) > self._max:
            seen.popitem(last=False)
            self._held -= 1
        self._seen.move_to_end(identity)
        return True

    def _prune(self, seen: OrderedDict[bytes, float], now: float) -> None:
        while seen:
            nonce, expiry = next(iter(seen.items()))
            if now < expiry:
                break
            del seen[nonce]
            self._held -= 1

    def _forget_idle(self, now: float) -> None:
        """Drop the senders whose newest nonce has expired (the front of :attr:`_seen`)."""
        while self._seen:
            identity, seen = next(iter(self._seen.items()))
            if seen and now < next(reversed(seen.values())):
                break
            del self._seen[identity]
            self._held -= len(seen)

    def handle_timer(self, now: float) -> None:
        """Forget every nonce that has expired at ``now``."""
        for identity in list(self._seen):
            seen = self._seen[identity]
            self._prune(seen, now)
            if not seen:
                del self._seen[identity]

    def get_timer(self) -> float | None:
        """When the oldest remembered nonce expires, or None when none is held."""
        expiries = [next(iter(seen.values())) for seen in self._seen.values() if seen]
        return min(expiries) if expiries else None
