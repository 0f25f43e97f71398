"""A voice agent and its frontends on one machine: ``python -m lkproto.agents.demo``.

Everything runs on 127.0.0.1: a local livekit-server (:class:`lkproto.testing.LocalServer`), an
agent (:mod:`.agent`, a participant of kind ``AGENT``) and a frontend, either the Python one
(:mod:`.frontend`) or a web page (:mod:`.web`, livekit-client in the browser).

The conversation, with the LiveKit convention each step shows (PROTOCOL-MAP §8):

1. The agent joins with ``lk.agent.state = initializing``, publishes its voice track, waits until
   the user hears it, then says ``listening``.
2. The user holds push-to-talk: the frontend calls the agent's ``start_turn`` RPC, publishes its
   microphone (the Python frontend plays ``assets/question.wav``, the page a real microphone or a
   test oscillator), then calls ``end_turn``.
3. While the turn is open the agent streams an interim ``lk.transcription`` of the user
   (``[speech 1.2 s]``: how much speech it has heard so far). There is no speech recogniser
   here: the final user segment is the text the frontend attached to ``start_turn`` (the Python
   frontend knows what its WAV file says), or ``[speech 2.4 s]`` when none was given.
4. ``thinking`` (the agent calls its weather "tool"), then ``speaking``: it plays
   ``assets/answer.wav`` on its track while streaming its own transcript, interim then final,
   and sends a PNG of the moon as a byte stream on :data:`IMAGE_TOPIC`; then ``listening`` again.
5. The frontend calls the agent's ``get_weather`` RPC and sends a chat message (``lk.chat``),
   which the agent answers with a text-only transcript.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AGENT_IDENTITY",
    "AGENT_NAME",
    "ANSWER_TEXT",
    "CHAT_REPLY_TEXT",
    "IMAGE_NAME",
    "IMAGE_TOPIC",
    "NO_SPEECH_TEXT",
    "QUESTION_TEXT",
    "RPC_END_TURN",
    "RPC_GET_WEATHER",
    "RPC_START_TURN",
    "USER_IDENTITY",
]

AGENT_IDENTITY: Final = "moon-agent"
AGENT_NAME: Final = "moon-weather"
USER_IDENTITY: Final = "demo-user"

# What assets/question.wav and assets/answer.wav say (make_assets.py speaks these texts).
QUESTION_TEXT: Final = "What is the weather like on the moon?"
ANSWER_TEXT: Final = "Sunny, with no clouds at all. Here is a picture."
NO_SPEECH_TEXT: Final = "I did not hear anything. Hold the button while you speak."
CHAT_REPLY_TEXT: Final = "You're welcome! Ask me about the moon any time."

# Push-to-talk RPCs, named as in the LiveKit Agents push-to-talk example.
RPC_START_TURN: Final = "start_turn"
RPC_END_TURN: Final = "end_turn"
RPC_GET_WEATHER: Final = "get_weather"

IMAGE_TOPIC: Final = "demo.image"
IMAGE_NAME: Final = "moon.png"
