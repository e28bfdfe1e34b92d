"""radgpt inference package."""
