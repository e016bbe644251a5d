"""IT's fleet tools: signing keys, signed firmware bundles, flashing and inventory."""
