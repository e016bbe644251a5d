"""The daemon: one owner of the desk unit, bridging it to the softphone and local API clients."""
