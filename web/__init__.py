"""The web app for album owners: static pages served by the API itself (same origin, nothing from a CDN)."""
