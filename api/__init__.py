"""The HTTP APIs of the records system, officers and the compliance console."""
