"""offhook: the agent-PC side of the offhook desk unit."""

__version__ = "0.1.0"
