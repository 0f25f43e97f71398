"""Every protobuf message and enum lkproto speaks, in one flat namespace.

``from lkproto.wire import pb``, then ``pb.SignalRequest``, ``pb.DataPacket``, ``pb.Room``...
The classes are generated from ``proto/lkproto/_pb/*.proto`` (our own schema, wire-compatible with
LiveKit's ``livekit_models.proto`` / ``livekit_rtc.proto``). This module and the codecs next to it
are the only importers of ``lkproto._pb``.
"""

from __future__ import annotations

from types import ModuleType

from lkproto._pb import data_pb2 as _data
from lkproto._pb import models_pb2 as _models
from lkproto._pb import signal_pb2 as _signal
from lkproto._pb.data_pb2 import *  # noqa: F403
from lkproto._pb.models_pb2 import *  # noqa: F403
from lkproto._pb.signal_pb2 import *  # noqa: F403

# Every message, enum and enum value of the three schema files.
__all__ = sorted(  # noqa: PLE0605
    {
        name
        for module in (_data, _models, _signal)
        for name, value in vars(module).items()
        if not name.startswith("_") and name != "DESCRIPTOR" and not isinstance(value, ModuleType)
    }
)
