"""Room and namespace names, made in one place."""

CHAT = "/chat"
AGENT = "/agent"
BOT = "/bot"
AGENTS_ROOM = "agents"


def conversation(conversation_id: str) -> str:
    """Every connection of a conversation's visitor, in /chat.

    Agents are reached through their own room instead: which agent a conversation has is read
    from the database at each change, so no room membership has to follow a transfer.
    """
    return f"conversation:{conversation_id}"


def agent(agent_id: str) -> str:
    """Every connection of one agent, in /agent."""
    return f"agent:{agent_id}"


def bot(name: str) -> str:
    """Every worker connection of one external bot, in /bot."""
    return f"bot:{name}"
