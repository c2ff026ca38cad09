"""Helpers the tests share: real servers, peers, browsers and media."""
