"""The media plane: peers (aiortc glue), forwarding, RTCP feedback and the live rooms.

Never imports ``recorder``, ``signaling``, ``api`` or ``app``: they depend on it.
"""
