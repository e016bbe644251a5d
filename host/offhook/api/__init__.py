"""The local API: JSON over WebSocket on 127.0.0.1, for web softphones, CRMs and the agent panel."""
