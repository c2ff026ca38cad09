"""Recording of forwarded media: frames, segments, signed manifests, verify and export.

Implements the tap contract of ``visit.tap``; never imports ``sfu``.
"""
