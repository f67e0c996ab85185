"""One router per domain; the app factory (api/app.py) includes them all."""
