"""The media plane: visits, peers (aiortc glue), forwarding and RTCP feedback.

Never imports ``signaling`` or ``recorder``: they depend on it, not the other way.
"""
