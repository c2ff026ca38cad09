"""The pages (HTML, JavaScript, CSS), shipped as package data so a regular install serves
them too; no Python here. ``head.html`` is the head every page shares: a page's own file
holds its title, its scripts and its content, and is served after it (app/pages.py)."""
