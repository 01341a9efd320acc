"""Dashboard screens; each receives live data from the app as messages (attributes down, messages
up)."""
