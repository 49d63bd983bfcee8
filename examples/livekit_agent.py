"""A LiveKit Agents voice agent whose face is lipstream.

Run lipstream (`make run`) and a LiveKit server, then, with LIVEKIT_URL, LIVEKIT_API_KEY,
LIVEKIT_API_SECRET and OPENAI_API_KEY set and
`pip install 'lipstream[livekit]' 'livekit-agents[openai]'`:

    python examples/livekit_agent.py dev

For each room the agent joins, it starts `lipstream livekit-avatar` as the avatar participant
(publishing on the agent's behalf) and sends its voice there instead of into the room.
"""

import asyncio
import os

from livekit import api
from livekit.agents import Agent, AgentSession, JobContext, WorkerOptions, cli
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import DataStreamAudioOutput
from livekit.agents.voice.room_io import RoomOptions
from livekit.plugins import openai

AVATAR = "lipstream-avatar"


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    token = (
        api.AccessToken()
        .with_identity(AVATAR)
        .with_kind("agent")
        .with_grants(api.VideoGrants(room_join=True, room=ctx.room.name))
        .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: ctx.local_participant_identity})
        .to_jwt()
    )
    avatar = await asyncio.create_subprocess_exec(
        "lipstream", "livekit-avatar", "--livekit-url", os.environ["LIVEKIT_URL"],
        "--token", token, "--url", os.environ.get("LIPSTREAM_URL", "ws://127.0.0.1:8080/"),
    )  # fmt: skip

    async def stop_avatar() -> None:
        avatar.terminate()
        await avatar.wait()

    ctx.add_shutdown_callback(stop_avatar)
    session = AgentSession(llm=openai.realtime.RealtimeModel())
    session.output.audio = DataStreamAudioOutput(ctx.room, destination_identity=AVATAR)
    await session.start(
        agent=Agent(instructions="You are a friendly, brief assistant."),
        room=ctx.room,
        room_options=RoomOptions(audio_output=False),  # the avatar speaks for the agent
    )


if __name__ == "__main__":
    cli.run_app(WorkerOptions(entrypoint_fnc=entrypoint))
