"""The web server: the browser console's files and the HTTP API it uses.

``app.create_app(settings)`` builds the ASGI application; ``server.start_web_server(settings)``
serves it inside an asyncio program and ``server.run_web_server(settings)`` is ``lipstream web``.
The application's parts: ``catalog`` (the model packages and their videos), ``console_files``
(the console's static files), ``openai_token`` (Realtime keys), ``speech`` (text to speech) and
``errors`` (every failure as a JSON answer with its HTTP status).
"""
