"""Recording of forwarded media (see issue "Mandatory recording")."""
