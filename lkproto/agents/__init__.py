"""Agent-frontend helpers (agent state, transcriptions, chat, pre-connect buffer): later issue."""

from __future__ import annotations

__all__: list[str] = []
