"""The web server: the browser console's files and the HTTP API it uses.

``app.create_app(settings)`` builds the ASGI application; ``server.start_web_server(settings)``
serves it inside an asyncio program and ``server.run_web_server(settings)`` is ``lipstream web``.
"""
