"""Sub-command modules of the `offhook` CLI (see offhook.cli)."""
