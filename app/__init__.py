"""Composition: configuration, the command line, the aiohttp server, workers, health, logs."""
