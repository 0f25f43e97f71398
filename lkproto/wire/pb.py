"""Every protobuf message and enum lkproto speaks, in one flat namespace.

``from lkproto.wire import pb``, then ``pb.SignalRequest``, ``pb.DataPacket``, ``pb.Room``...
The classes are generated from ``proto/lkproto/_pb/*.proto`` (our own schema, wire-compatible with
LiveKit's ``livekit_models.proto`` / ``livekit_rtc.proto``). This module and the codecs next to it
are the only importers of ``lkproto._pb``.
"""

from __future__ import annotations

from lkproto._pb.data_pb2 import *  # noqa: F403
from lkproto._pb.models_pb2 import *  # noqa: F403
from lkproto._pb.signal_pb2 import *  # noqa: F403
