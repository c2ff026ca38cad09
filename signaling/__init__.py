"""The WebSocket signaling session of one page, and the TURN credentials it hands out."""
