"""threadpilot core: platform-neutral, no chat-platform imports."""
