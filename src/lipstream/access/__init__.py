"""Who may use the services: client addresses, session tokens and rate limits."""
