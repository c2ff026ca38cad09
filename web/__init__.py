"""The pages (HTML, JavaScript, CSS), shipped as package data so a regular install serves
them too; no Python here."""
