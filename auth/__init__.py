"""Booking tokens: verification, the public-key stores it reads, and the reference issuer."""
