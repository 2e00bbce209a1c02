"""The HTTP side of the LLM bot: an OpenAI-compatible chat-completions client and its SSE parser."""
