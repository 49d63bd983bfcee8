"""Helpers the test folders share: an event loop thread, a fake OpenAI, a network, a portrait."""
