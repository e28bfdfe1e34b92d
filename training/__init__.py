"""radgpt training package."""
