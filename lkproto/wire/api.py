"""Server API messages: RoomService, AgentDispatch, Egress, Ingress, SIP, webhooks, models.

``from lkproto.wire import api as apipb``, then ``apipb.CreateRoomRequest``... The classes are
generated from ``proto/lkproto/_pb/api.proto`` (our own schema; names, numbers and types are the
LiveKit protocol's, so protobuf bytes interoperate with livekit-protocol). The shared models
(``Room``, ``ParticipantInfo``, ``TrackInfo``, ``DataPacket``, ...) of ``models.proto`` and
``data.proto`` are in this namespace too, as livekit-api re-exports livekit-protocol's models, so
one import gives every type a server API call takes or returns.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from lkproto._pb import api_pb2 as _api
from lkproto._pb import data_pb2 as _data
from lkproto._pb import models_pb2 as _models
from lkproto._pb.api_pb2 import *  # noqa: F403
from lkproto._pb.data_pb2 import *  # noqa: F403
from lkproto._pb.models_pb2 import *  # noqa: F403

if not TYPE_CHECKING:
    # Every message, enum and enum value of api.proto, models.proto and data.proto. Hidden from
    # type checkers, which cannot evaluate it: they then export every public name of the star
    # imports, the same set, so ``from lkproto.wire.api import *`` is typed.
    __all__ = sorted(  # noqa: PLE0605
        {
            name
            for module in (_api, _models, _data)
            for name, value in vars(module).items()
            if not name.startswith("_")
            and name != "DESCRIPTOR"
            and not isinstance(value, ModuleType)
        }
    )
