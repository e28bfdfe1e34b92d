"""radgpt integration package."""
