"""Load generators and benchmarks for Visitbridge (see BENCHMARKS.md at the repo root).

Nothing here is imported by the product: the benchmarks drive a real server process
through its public interfaces (WebSocket signaling, WebRTC media, /metrics).
"""
